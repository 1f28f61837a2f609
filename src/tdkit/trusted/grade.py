"""``tdkit grade``: every submission through the untrusted run and the trusted checks.

Per submission: nbgrader sanitising and the grading profile (trusted), the notebook and the
probe in the sandbox (untrusted), then the hidden checks against the reference on the
probe's artifacts and the gradebook update (trusted). A broken submission is reported and
graded as far as it goes; it never stops the batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
from nbgrader.utils import parse_utc

from tdkit.core.assignment import Assignment, CurveFigure, GradingProfile
from tdkit.core.config import Limits
from tdkit.core.course import Course, course_assignments
from tdkit.core.errors import TdkitError
from tdkit.core.json_files import DamagedFile
from tdkit.intake.identify import require_assignment
from tdkit.intake.submission import UnreadableSubmission, prepare_submission, read_submission
from tdkit.reports.results import (
    AssignmentResults,
    StudentResult,
)
from tdkit.reports.results_file import load_results
from tdkit.trusted.artifacts import read_artifact
from tdkit.trusted.checks import NOT_EVALUATED, UNCHANGED, ChecksCrashed, not_evaluated, run_checks
from tdkit.trusted.gradebook import formgrader_notebook, prepared_notebook, record_grades
from tdkit.trusted.incremental import (
    ASKED,
    GRADER,
    SUBMISSION,
    Plan,
    grader_fingerprint,
    in_gradebook,
    plan,
    submission_digest,
)
from tdkit.trusted.preflight import preflight
from tdkit.trusted.sanitize import release_text, sanitise_notebook
from tdkit.trusted.settings import GradingSettings, grading_settings
from tdkit.untrusted.job import SandboxJob, SandboxOutcome, execute_job, failed_outcome

DEFAULT_LIMITS = Limits()


@dataclass
class GradeRun:
    results: AssignmentResults
    graded: list[str] = field(default_factory=list)
    results_json: Path | None = None
    grades_csv: Path | None = None
    reports_dir: Path | None = None
    seconds: float = 0.0
    grading_seconds: float = (
        0.0  # from the first job sent to the last result judged: the rest is what keeping costs
    )
    plan: Plan = field(default_factory=Plan)  # why each student was graded; who was skipped
    registered: bool = False  # the committed release was registered in the gradebook (fresh clone)


def _finite(values: Any) -> list[float] | None:
    if not isinstance(values, list):
        return None
    out = []
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


def _figure_views(
    definition: Assignment, artifacts: Path, views: Path
) -> dict[str, dict[str, Any]]:
    """Each figure of the assignment: the student's values (from the artifacts) and the
    reference's (the oracle's views, as the hidden checks' run wrote them)."""
    try:
        reference = json.loads(views.read_text())
    except (OSError, ValueError):
        reference = {}  # the checks crashed before writing: the page shows the student's side only
    reference = reference if isinstance(reference, dict) else {}
    found: dict[str, dict[str, Any]] = {}
    for figure in definition.figures:
        artifact = read_artifact(artifacts, figure.group)
        if isinstance(figure, CurveFigure):
            student: Any = _finite(artifact[figure.field])
            theirs: Any = _finite(reference.get(figure.name))
        else:
            # The first array the group's artifact has of those named (the run as written first).
            array = next((artifact.arrays[k] for k in figure.arrays if k in artifact.arrays), None)
            student, theirs = _plain_matrix(array, figure.shape), reference.get(figure.name)
        found[figure.name] = {"student": student, "reference": theirs}
    return found


def _plain_matrix(array: np.ndarray | None, shape: tuple[int, int]) -> list[list[float]] | None:
    """A 2-D array of finite numbers, no larger than four times the asked shape, as lists."""
    if (
        array is not None
        and array.ndim == 2
        and array.size <= 4 * shape[0] * shape[1]
        and np.issubdtype(array.dtype, np.number)
        and np.all(np.isfinite(array))
    ):
        return array.astype(float).tolist()  # type: ignore[no-any-return]
    return None


def prepare_job(
    course: Course, student_id: str, settings: GradingSettings | None = None
) -> SandboxJob:
    """Trusted: nbgrader's sanitising and the grading profile. Raises if the notebook is unreadable."""
    settings = settings or grading_settings(course)
    limits, definition = settings.limits, settings.definition
    nb = read_submission(course, student_id, limits.max_notebook_bytes, limits.max_cells)
    require_assignment(nb, course.release_notebook)
    prepared = prepare_submission(course, nb, student_id, settings.profile)
    return SandboxJob(
        student_id,
        nbformat.writes(prepared),
        limits,
        tuple(map(str, settings.profile.data_dirs)),
        settings.environment.kernel_json(),
        course.assignment,
        definition.group_names,
        settings.probe,
        definition.preload,
    )


def _submitted_at(course: Course, student_id: str) -> str | None:
    """As nbgrader autograde: the submission's timestamp.txt (written by nbgrader collect), else
    None. Formgrader counts a submission as autograded only when the gradebook's timestamp equals
    timestamp.txt's (None when absent); the notebook's mtime made every one 'needs autograding'."""
    stamp = course.submitted_notebook(student_id).parent / "timestamp.txt"
    if stamp.is_symlink() or not stamp.is_file():
        return None
    text = stamp.read_text(encoding="utf-8", errors="replace").strip()[:100]
    try:
        parse_utc(text)
    except (ValueError, OverflowError):
        return None  # nbgrader itself would crash on it: better no timestamp than no grade
    return text


# What a run killed by a signal met: the signal, then the sentence the student reads.
_SIGNALS = {
    signal.SIGKILL: "la limite de mémoire ({memory_mb} Mo par processus) ou un arrêt forcé",
    signal.SIGXCPU: "la limite de temps de calcul ({cpu_seconds} s de CPU par processus)",
    signal.SIGXFSZ: "la limite de taille de fichier ({max_file_mb} Mo)",
    signal.SIGSEGV: "une erreur fatale du noyau Python (erreur de segmentation)",
    signal.SIGABRT: "un arrêt brutal du noyau Python (abort)",
}
# Lines of the run's output that the student did not cause: not worth a word in the report.
_NOISE = re.compile(
    r"\[IPKernelApp\]|Kernel is running over TCP|it/s\]|\d+%\|.*\||Creating parquet|"
    r"Generating \w+ split|Map: |Filter: "
)


def stopped_message(returncode: int, output: str, limits: Limits) -> str:
    """Why a run ended early, in French: the signal or limit that stopped it, and the last
    lines of its output that are not noise (kernel warnings, progress bars)."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        name = signal.Signals(number).name if number else ""
    except ValueError:
        name = ""
    if name:
        cause = _SIGNALS.get(signal.Signals(number), "un signal du système")
        head = (
            f"L'exécution a été arrêtée par le signal {name} : "
            f"{cause.format(**dataclasses.asdict(limits))}."
        )
    else:
        head = f"L'exécution s'est arrêtée avec le code de sortie {returncode}."
    said = [line for line in output.splitlines() if line.strip() and not _NOISE.search(line)]
    tail = "\n".join(said[-5:])[-800:]
    return f"{head}\n{tail}" if tail else head


def _failure(outcome: SandboxOutcome, limits: Limits) -> str | None:
    notes = []
    if outcome.timed_out:
        notes.append(f"Temps dépassé : l'exécution a été arrêtée après {limits.run_timeout} s.")
    if outcome.record.failure is not None:
        notes.append(outcome.record.failure)
    if outcome.returncode not in (0, None) and not outcome.record.written and not outcome.timed_out:
        notes.append(stopped_message(outcome.returncode, outcome.output, limits))
    if outcome.record.truncated:
        notes.append(
            f"Sorties tronquées : le notebook a affiché plus de {limits.max_output_mb} Mo ; seul le début est "
            "conservé dans le notebook corrigé."
        )
    return "\n".join(notes) if notes else None


def judge(
    course: Course,
    outcome: SandboxOutcome,
    settings: GradingSettings | None = None,
    graded_answers: dict[str, str] | None = None,
) -> StudentResult:
    """Trusted: hidden checks on the artifacts, the gradebook, the autograded notebook.

    ``graded_answers``: the digests of the answers of the version graded before (see record_grades)."""
    started = time.perf_counter()
    settings = settings or grading_settings(course)
    limits, definition = settings.limits, settings.definition
    sid = outcome.student_id
    with tempfile.TemporaryDirectory(prefix=f"tdkit-judge-{sid}-") as folder:
        artifacts = Path(folder) / "artifacts"
        artifacts.mkdir()
        for name, data in outcome.artifacts.items():
            (artifacts / Path(name).name).write_bytes(data)
        views = (
            Path(folder) / "reference.json"
        )  # outside the artifacts: nothing of the run's can stand in
        checks = run_checks(artifacts, course.grader_tests, reference_out=views)
        figures = _figure_views(definition, artifacts, views)
    refused = outcome.record.refused
    notice = None if refused else _untouched_notice(course, sid, limits)
    if refused or notice:
        # One message at the top of the report says why; each failed check only points to it.
        checks = [
            c if c.passed else not_evaluated(c, NOT_EVALUATED if refused else UNCHANGED)
            for c in checks
        ]
    executed = formgrader_notebook(outcome)
    if executed is not None:
        executed = sanitise_notebook(
            executed, release_text(course.release_notebook)
        )  # what graders' browsers render
        target = course.autograded_notebook(sid)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed, target)
    # Free-text answers are judged on the trusted prepared notebook, never on what the run wrote.
    answers = record_grades(
        course,
        sid,
        checks,
        prepared_notebook(outcome) or executed,
        _submitted_at(course, sid),
        settings.deadlines,
        graded_answers=graded_answers,
    )
    return StudentResult(
        sid,
        checks,
        seconds=outcome.seconds + time.perf_counter() - started,
        failure=_failure(outcome, limits),
        errors=outcome.record.errors,
        figures=figures,
        manual=_manual_cells(executed),
        missing_modules=outcome.record.missing_modules,
        refused=refused,
        notice=notice,
        answers=answers,
    )


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnreadableSubmission):
        return str(error)
    return f"Notebook illisible ({type(error).__name__}) : {str(error)[:500]}"


def _untouched_notice(course: Course, student_id: str, limits: Limits) -> str | None:
    """« Rien n'a été modifié » when the submission is the release as distributed (trusted: the submitted file)."""
    try:
        nb = read_submission(course, student_id, limits.max_notebook_bytes, limits.max_cells)
        found = require_assignment(nb, course.release_notebook)
    except UnreadableSubmission:  # changed since its run: the run's own result stands
        return None
    return found.message if found.verdict == "untouched" else None


def _refused(student_id: str, error: Exception) -> SandboxOutcome:
    """The outcome of a notebook refused before running (unreadable, or not the TD)."""
    outcome = failed_outcome(student_id, _unreadable(error))
    outcome.record.refused = True
    return outcome


def _manual_cells(executed: nbformat.NotebookNode | None) -> dict[str, float]:
    manual = {}
    for cell in executed.cells if executed is not None else []:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            manual[str(meta.get("grade_id"))] = float(meta.get("points", 0))
    return manual


def _ungraded(course: Course, student_id: str, failure: str) -> StudentResult:
    """Every check failed with the reason: the gradebook is left as it was for this student."""
    with tempfile.TemporaryDirectory(prefix="tdkit-empty-") as empty:
        checks = run_checks(empty, course.grader_tests)
    return StudentResult(student_id, checks, failure=failure)


def _other_assignments(course: Course) -> set[str]:
    """Submitted folders of no assignment of the course (another course's, a typo)."""
    if not course.submitted.is_dir():
        return set()
    known = set(course_assignments(course.root))
    return {p.name for p in course.submitted.glob("*/*") if p.is_dir() and p.name not in known}


def submitted_students(course: Course) -> list[str]:
    if not course.submitted.is_dir():
        return []
    return sorted(
        p.parent.parent.name
        for p in course.submitted.glob(f"*/{course.assignment}/{course.assignment}.ipynb")
    )


def grade_all(
    course: Course,
    *,
    student: str | None = None,
    everyone: bool = False,
    limits: Limits | None = None,
    profile: GradingProfile | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[str], None] = print,
) -> GradeRun:
    """Grade the new and changed submissions (``everyone``: all of them; ``student``: that one),
    keep the other results, then write results.json, grades.csv and the reports.

    ``profile``: the assignment's own (``Course.grading_profile()``) unless given."""
    from tdkit.release.generate import register_release
    from tdkit.reports.course_page import write_course_page
    from tdkit.reports.html import render_reports
    from tdkit.trusted.course_grade import keep_course_grades, with_course_grades
    from tdkit.trusted.fanout import after_grading

    course.definition()  # the assignment's grading side, checked before any work
    if not course.release_notebook.is_file():
        raise TdkitError(f"{course.release_notebook} is missing: run 'tdkit release' first.")
    students = submitted_students(course)
    if student is not None and student not in students:
        raise TdkitError(
            f"No submission for {student!r} at {course.submitted_notebook(student)}: check the id, or run "
            "'tdkit collect ARCHIVE.zip' first."
        )
    if not students:
        raise TdkitError(
            f"No submission under {course.submitted}: run 'tdkit collect ARCHIVE.zip' first."
        )
    started = time.perf_counter()
    # The course's settings, read once; then every file of the instructor's, before anyone is graded.
    settings = grading_settings(course, limits=limits, profile=profile)
    for note in preflight(course, students, settings.deadlines):
        progress(note)
    # A gradebook without the assignment (a fresh clone) would give everyone 0: register it first.
    registered = register_release(course)
    if registered:
        progress(
            f"registered the committed {course.release_notebook.relative_to(course.root)} in the gradebook"
        )
    results_path = course.reports / "results.json"
    previous = _previous_results(results_path, progress, everyone)
    # Everyone still submitted keeps their last result; the students graded now replace theirs.
    results = AssignmentResults(
        course.assignment,
        {
            sid: previous.students[sid]
            for sid in students
            if previous is not None and sid in previous.students
        },
    )
    grader = grader_fingerprint(course, settings.limits, settings.profile)
    digests = {sid: submission_digest(course, sid, settings.limits) for sid in students}
    if student is not None:
        todo = Plan({student: ASKED}, [s for s in students if s != student])
    else:
        todo = plan(students, previous, grader, digests, in_gradebook(course), everyone=everyone)
        progress(todo.summary())
    results.environment = list(settings.environment.packages)
    for other in sorted(_other_assignments(course)):
        progress(f"skipped submitted/*/{other}/: the course has no assignment {other!r}")
    pool = executor or ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="tdkit-untrusted"
    )
    grading_started = time.perf_counter()
    pending = {}
    done: list[SandboxOutcome] = []
    for sid in todo.grade:
        try:
            pending[pool.submit(execute_job, prepare_job(course, sid, settings))] = sid
        except Exception as error:  # noqa: BLE001 - an unreadable notebook is this student's failure
            done.append(_refused(sid, error))
    crashed: set[str] = set()  # jobs whose process died: no fault of the notebook's that we know of
    try:
        # Runs finish in any order; this thread alone judges them and writes the gradebook.
        for number, outcome in enumerate(_outcomes(done, pending, crashed), 1):
            sid = outcome.student_id
            try:
                before = previous.students.get(sid) if previous is not None else None
                result = judge(course, outcome, settings, before.answers if before else None)
            except ChecksCrashed as error:
                raise TdkitError(
                    f"The hidden checks themselves crashed; fix grader_tests/ and grade again:\n{error}"
                ) from error
            except Exception as error:  # noqa: BLE001 - one submission's fault never stops the batch
                result = _ungraded(
                    course, sid, f"Correction impossible ({type(error).__name__}) : {error}"
                )
                crashed.add(sid)
            result.fingerprint = {SUBMISSION: digests[sid], GRADER: grader}
            result.grader_failure = sid in crashed
            results.students[sid] = result
            elapsed = time.perf_counter() - started
            eta = elapsed / number * (len(todo.grade) - number)
            note = f"  ({result.failure.splitlines()[0][:60]})" if result.failure else ""
            progress(
                f"[{number}/{len(todo.grade)}] {sid}: {result.score:g}/{result.max_score:g} automatic in {result.seconds:.1f} s"
                f" ({todo.grade[sid]}), ETA {eta:.0f} s{note}"
            )
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
    grading_seconds = time.perf_counter() - grading_started if todo.grade else 0.0
    graded = after_grading(course, results, students, todo.grade, settings.deadlines)
    results = with_course_grades(course, graded, settings.deadlines)
    keep_course_grades(course, results)
    # Pages whose result is as before stay; a group member's page follows the notebook graded for them.
    unchanged = previous is not None and previous.to_json() == results.to_json()
    render_reports(
        results,
        settings.definition,
        course.reports / "html",
        only=_changed_results(results, previous),
        summary=not unchanged,
    )
    write_course_page(course)
    return GradeRun(
        results,
        list(todo.grade),
        results_path,
        course.reports / "grades.csv",
        course.reports / "html",
        time.perf_counter() - started,
        grading_seconds,
        todo,
        registered,
    )


def _changed_results(results: AssignmentResults, previous: AssignmentResults | None) -> set[str]:
    """Students whose result differs from the previous run's (or who had none)."""
    before = previous.students if previous is not None else {}
    return {
        sid
        for sid, now in results.students.items()
        if sid not in before or before[sid].to_json() != now.to_json()
    }


def _previous_results(
    path: Path, progress: Callable[[str], None], everyone: bool
) -> AssignmentResults | None:
    """The last results; a damaged file stops the run, unless --all grades everyone anyway."""
    if not path.is_file():
        return None
    try:
        return load_results(path)
    except DamagedFile as error:
        if not everyone:
            raise
        progress(f"{path} is damaged ({error.problem}): every submission is graded again")
        return None


def _outcomes(
    done: list[SandboxOutcome], pending: dict[Future[SandboxOutcome], str], crashed: set[str]
) -> Iterator[SandboxOutcome]:
    """Outcomes as they come; a job whose worker died (twice, on Dask) is that student's failure,
    added to ``crashed``."""
    yield from done
    for future in as_completed(pending):
        try:
            yield future.result()
        except Exception as error:  # noqa: BLE001 - e.g. distributed.KilledWorker
            crashed.add(pending[future])
            yield failed_outcome(
                pending[future],
                f"L'exécution a tué le processus qui la faisait tourner ({type(error).__name__}) : {error}",
            )
