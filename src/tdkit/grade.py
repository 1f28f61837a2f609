"""``tdkit grade``: every submission through the untrusted run and the trusted checks.

Per submission: nbgrader sanitising and the grading profile (trusted), the notebook and the
probe in the sandbox (untrusted), then the hidden checks against the reference on the
probe's artifacts and the gradebook update (trusted). A broken submission is reported and
graded as far as it goes; it never stops the batch.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import torch

from tdkit import runner
from tdkit.artifacts import read_artifact
from tdkit.checks import ChecksCrashed, run_checks
from tdkit.course import Course
from tdkit.errors import TdkitError
from tdkit.execute import CellError
from tdkit.gradebook import record_grades
from tdkit.inputs import GradingData, GradingInputs, eval_model, train_model
from tdkit.prepare import GradingProfile, prepare_submission
from tdkit.results import (
    AssignmentResults,
    StudentResult,
    read_results_json,
    write_grades_csv,
    write_results_json,
)
from tdkit.sandbox import Limits, run_sandboxed

DEFAULT_LIMITS = Limits()
DEFAULT_PROFILE = GradingProfile()


@dataclass
class GradeRun:
    results: AssignmentResults
    graded: list[str] = field(default_factory=list)
    results_json: Path | None = None
    grades_csv: Path | None = None
    reports_dir: Path | None = None
    seconds: float = 0.0


def _finite(values: Any) -> list[float] | None:
    if not isinstance(values, list):
        return None
    out = []
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


@cache
def _reference_views(root: Path) -> tuple[list[float], list[list[int]]]:
    """The reference's loss curve and confusion matrix on the grading inputs, for the reports."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import reference

    inputs = GradingInputs()
    data = GradingData(inputs)
    model = train_model(reference.ConvNet, inputs)
    history = reference.train(model, torch.optim.SGD(model.parameters(), lr=inputs.train_lr), data.train, inputs.train_epochs)
    confusion = reference.confusion_matrix(eval_model(reference.ConvNet, inputs), data.eval)
    return [float(v) for v in history], confusion.tolist()


def _student_views(artifacts: Path) -> tuple[list[float] | None, list[list[float]] | None]:
    history = _finite(read_artifact(artifacts, "train")["loss_history"])
    confusion = read_artifact(artifacts, "confusion_matrix").arrays.get("value")
    matrix = None
    drawable = confusion is not None and confusion.ndim == 2 and confusion.size <= 400
    if drawable and np.issubdtype(confusion.dtype, np.number) and np.all(np.isfinite(confusion)):
        matrix = confusion.astype(float).tolist()
    return history, matrix


def _errors(record: dict[str, Any]) -> list[CellError]:
    errors = []
    for entry in record.get("errors", []):
        try:
            errors.append(CellError(**{k: (int(v) if k == "index" else str(v)[:20000]) for k, v in entry.items()}))
        except TypeError:
            continue
    return errors


@dataclass
class UntrustedRun:
    """What the sandboxed stage left: read by the trusted stage, never believed for scores."""

    student_id: str
    scratch: Path
    timestamp: str
    seconds: float = 0.0
    failure: str | None = None
    errors: list[CellError] = field(default_factory=list)
    executed: nbformat.NotebookNode | None = None

    @property
    def artifacts(self) -> Path:
        return self.scratch / runner.ARTIFACTS


def run_untrusted(
    course: Course, student_id: str, scratch: Path, limits: Limits = DEFAULT_LIMITS,
    profile: GradingProfile = DEFAULT_PROFILE,
) -> UntrustedRun:
    """Prepare the submission (trusted) and run it with the probe in the sandbox (untrusted)."""
    started = time.perf_counter()
    submitted = course.submitted_notebook(student_id)
    timestamp = datetime.fromtimestamp(submitted.stat().st_mtime, timezone.utc).isoformat()
    run = UntrustedRun(student_id, scratch, timestamp)
    try:
        nb = nbformat.read(submitted, as_version=4)
        prepared = prepare_submission(course, nb, student_id, profile)
    except Exception as error:  # noqa: BLE001 - any unreadable notebook is reported, not fatal
        run.failure = f"Notebook illisible ({type(error).__name__}) : {str(error)[:500]}"
        run.seconds = time.perf_counter() - started
        return run
    nbformat.write(prepared, scratch / runner.SUBMISSION)
    sandboxed = run_sandboxed(
        [sys.executable, "-m", "tdkit.runner", str(scratch), str(limits.cell_timeout)],
        scratch,
        limits,
        readonly=profile.data_dirs(),
    )
    record = _read_run_record(scratch)
    run.errors = _errors(record)
    run.failure = record.get("failure") if isinstance(record.get("failure"), str) else None
    if sandboxed.timed_out:
        run.failure = f"Temps dépassé : l'exécution a été arrêtée après {limits.run_timeout} s."
    elif sandboxed.returncode != 0 and not record:
        run.failure = f"L'exécution s'est arrêtée (code {sandboxed.returncode}) : {sandboxed.output[-800:]}"
    run.executed = _read_executed(scratch)
    run.seconds = time.perf_counter() - started
    return run


def judge(course: Course, run: UntrustedRun) -> StudentResult:
    """The trusted stage: hidden checks on the artifacts, gradebook, autograded notebook."""
    started = time.perf_counter()
    checks = run_checks(run.artifacts, course.grader_tests)
    history, confusion = _student_views(run.artifacts)
    if run.executed is not None:
        target = course.autograded_notebook(run.student_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(run.executed, target)
    record_grades(course, run.student_id, checks, run.executed, run.timestamp)
    reference_history, reference_confusion = _reference_views(course.root)
    return StudentResult(
        run.student_id,
        checks,
        seconds=run.seconds + time.perf_counter() - started,
        failure=run.failure,
        errors=run.errors,
        curves={"student": history, "reference": reference_history},
        confusion={"student": confusion, "reference": reference_confusion},
        manual=_manual_cells(run.executed),
    )


def grade_submission(
    course: Course, student_id: str, limits: Limits = DEFAULT_LIMITS, profile: GradingProfile = DEFAULT_PROFILE
) -> StudentResult:
    """Grade one submission; whatever the notebook does, a result comes back."""
    with tempfile.TemporaryDirectory(prefix=f"tdkit-{student_id}-") as scratch:
        return judge(course, run_untrusted(course, student_id, Path(scratch), limits, profile))


def _read_run_record(scratch: Path) -> dict[str, Any]:
    try:
        record = json.loads((scratch / runner.RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _read_executed(scratch: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(scratch / runner.EXECUTED, as_version=4)
    except Exception:  # noqa: BLE001 - the run may have left nothing, or garbage
        return None


def _manual_cells(executed: nbformat.NotebookNode | None) -> dict[str, float]:
    manual = {}
    for cell in executed.cells if executed is not None else []:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            manual[str(meta.get("grade_id"))] = float(meta.get("points", 0))
    return manual


def _untrusted_or_failure(course: Course, student_id: str, limits: Limits, profile: GradingProfile) -> UntrustedRun:
    """The untrusted stage in its own scratch directory; a fault of the grader itself becomes the run's failure."""
    scratch = Path(tempfile.mkdtemp(prefix=f"tdkit-{student_id}-"))
    try:
        return run_untrusted(course, student_id, scratch, limits, profile)
    except Exception as error:  # noqa: BLE001 - reported for this student, the batch goes on
        now = datetime.now(timezone.utc).isoformat()
        return UntrustedRun(student_id, scratch, now, failure=f"Exécution impossible ({type(error).__name__}) : {error}")


def _ungraded(course: Course, student_id: str, failure: str) -> StudentResult:
    """Every check failed with the reason: the gradebook is left as it was for this student."""
    with tempfile.TemporaryDirectory(prefix="tdkit-empty-") as empty:
        checks = run_checks(empty, course.grader_tests)
    return StudentResult(student_id, checks, failure=failure)


def _other_assignments(course: Course) -> set[str]:
    if not course.submitted.is_dir():
        return set()
    return {p.name for p in course.submitted.glob("*/*") if p.is_dir() and p.name != course.assignment}


def submitted_students(course: Course) -> list[str]:
    if not course.submitted.is_dir():
        return []
    return sorted(p.parent.parent.name for p in course.submitted.glob(f"*/{course.assignment}/{course.assignment}.ipynb"))


def grade_all(
    course: Course,
    *,
    student: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    profile: GradingProfile = DEFAULT_PROFILE,
    workers: int = 1,
    progress: Callable[[str], None] = print,
) -> GradeRun:
    """Grade every submission (or one), then write results.json, grades.csv and the reports."""
    from tdkit.report import render_reports

    if not course.release_notebook.is_file():
        raise TdkitError(f"{course.release_notebook} is missing: run 'tdkit release' first.")
    students = submitted_students(course)
    if student is not None:
        if student not in students:
            raise TdkitError(
                f"No submission for {student!r} at {course.submitted_notebook(student)}: check the id, or run "
                "'tdkit collect ARCHIVE.zip' first."
            )
        students = [student]
    if not students:
        raise TdkitError(f"No submission under {course.submitted}: run 'tdkit collect ARCHIVE.zip' first.")
    results_path = course.reports / "results.json"
    results = AssignmentResults(course.assignment)
    if student is not None and results_path.is_file():
        results = read_results_json(results_path)
    started = time.perf_counter()
    for other in sorted(_other_assignments(course)):
        progress(f"skipped submitted/*/{other}/: tdkit grades {course.assignment} only")
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tdkit-untrusted")
    pending = {pool.submit(_untrusted_or_failure, course, sid, limits, profile): sid for sid in students}
    try:
        # Runs finish in any order; one thread judges them and alone writes the gradebook.
        for number, future in enumerate(as_completed(pending), 1):
            sid = pending[future]
            run = future.result()
            try:
                result = judge(course, run)
            except ChecksCrashed as error:
                raise TdkitError(
                    f"The hidden checks themselves crashed; fix grader_tests/ and grade again:\n{error}"
                ) from error
            except Exception as error:  # noqa: BLE001 - one submission's fault never stops the batch
                result = _ungraded(course, sid, f"Correction impossible ({type(error).__name__}) : {error}")
            finally:
                shutil.rmtree(run.scratch, ignore_errors=True)
            results.students[sid] = result
            elapsed = time.perf_counter() - started
            eta = elapsed / number * (len(students) - number)
            note = f"  ({result.failure.splitlines()[0][:60]})" if result.failure else ""
            progress(
                f"[{number}/{len(students)}] {sid}: {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s"
                f", ETA {eta:.0f} s{note}"
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    write_results_json(results, results_path)
    write_grades_csv(results, course.reports / "grades.csv")
    render_reports(results, course.reports / "html")
    return GradeRun(results, students, results_path, course.reports / "grades.csv", course.reports / "html",
                    time.perf_counter() - started)
