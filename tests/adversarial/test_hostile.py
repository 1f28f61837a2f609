"""Hostile and broken submissions, all graded in ONE batch beside a correct one.

Each case of ``hostile.CASES`` (plus the escape attempts and a symlink) is a real notebook under
``submitted/``; the batch runs with two workers and tight limits. Every test asserts that the bad
submission gets the score it deserves with a clear (French) message, and that the correct one,
graded in the same batch, keeps full marks. A protection removed makes its test fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, copy_course, nbgrader_export
from hostile import (
    CASES,
    FAKE_TRAIN,
    SECRET_ENV,
    SECRET_VALUE,
    escape,
    release_nb,
    solution_nb,
    write,
)

from tdkit.core.config import Limits
from tdkit.core.course import Course
from tdkit.release.generate import release
from tdkit.reports.results import StudentResult
from tdkit.trusted.grade import GradeRun, grade_all
from tdkit.untrusted.sandbox import bwrap_path

pytestmark = pytest.mark.skipif(
    bwrap_path() is None,
    reason="bubblewrap is not installed (scripts/system-deps.sh installs it as root)",
)

LIMITS = Limits(cell_timeout=20, run_timeout=120, max_output_mb=2, max_processes=256)
FULL = 21.0
OK, TD = "aaa_sol", "td_release"  # OK sorts first: it runs beside the first hostile runs
SLOW = "bbb_slow"  # the solution and a 12 s sleep: graded second in the interrupted batches


def _sha(paths: list[Path]) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in paths
        if p.is_file() and not p.is_symlink()
    }


def _instructor_files(course: Course) -> list[Path]:
    parts = [course.root / "reference", course.root / "grader_tests", course.root / "source"]
    return sorted(p for part in parts for p in part.rglob("*") if p.is_file()) + [
        course.root / "nbgrader_config.py"
    ]


class Batch:
    def __init__(
        self,
        course: Course,
        run: GradeRun,
        before: dict[str, str],
        instructor: dict[str, str],
        host_writes: list[Path],
    ) -> None:
        self.course, self.run, self.before, self.instructor, self.host_writes = (
            course,
            run,
            before,
            instructor,
            host_writes,
        )

    def __getitem__(self, sid: str) -> StudentResult:
        return self.run.results.students[sid]

    def outputs(self, sid: str) -> str:
        nb = nbformat.read(self.course.autograded_notebook(sid), as_version=4)
        texts = []
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                texts.append(str(output.get("text", "")))
                texts.append(str(output.get("data", {}).get("text/plain", "")))
        return "\n".join(texts)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    course = Course(copy_course(tmp_path_factory.mktemp("hostile")))
    release(course, verify=False)
    submitted = course.submitted
    write(submitted, OK, course.assignment, solution_nb())
    write(submitted, TD, course.assignment, release_nb())
    for case in CASES:
        write(submitted, case.name, course.assignment, case.build())
    root = course.root
    targets = {
        "reference": str(root / "reference" / "td_cnn.py"),
        "reference-rel": "../../.." + str(root / "reference" / "td_cnn.py"),
        "grader_tests": str(next((root / "grader_tests" / "td_cnn").glob("checks_*.py"))),
        "source": str(root / "source" / "td_cnn" / "td_cnn.md"),
        "gradebook": str(root / "gradebook.db"),
        "other-student": str(course.submitted_notebook(OK)),
        "other-student-rel": "../.." + str(course.submitted_notebook(OK)),
        "repo-reference": str(REPO / "reference" / "td_cnn.py"),
        "uid-locks": "/tmp/tdkit-uids/61000",
    }
    host_writes = [
        root / "pwned.txt",
        course.submitted_notebook(OK).parent / "pwned.txt",
        Path(f"/tmp/pwned-tdkit-{os.getpid()}.txt"),
    ]
    writes = [str(p) for p in host_writes[:2]] + [f"../pwned-tdkit-{os.getpid()}.txt"]
    write(submitted, "escape", course.assignment, escape(targets, writes))
    # A symlink as the submitted notebook, pointing at the instructor's full solution.
    link = course.submitted_notebook("symlink")
    link.parent.mkdir(parents=True)
    link.symlink_to(root / "source" / "td_cnn" / "td_cnn.ipynb")
    before = _sha(sorted(submitted.rglob("*.ipynb")))
    instructor = _sha(_instructor_files(course))
    patch = pytest.MonkeyPatch()
    patch.setenv(SECRET_ENV, SECRET_VALUE)  # the grader's environment holds a secret
    try:
        run = grade_all(course, limits=LIMITS, workers=2, progress=lambda line: None)
    finally:
        patch.undo()
    return Batch(course, run, before, instructor, host_writes)


def _failed(result: StudentResult) -> set[str]:
    return {c.check_id for c in result.checks if not c.passed}


def test_correct_submission_unaffected(batch: Batch) -> None:
    """Does the correct submission keep full marks, no failure, beside every hostile one?"""
    ok = batch[OK]
    assert (ok.score, ok.max_score, ok.failure, ok.errors) == (FULL, FULL, None, [])


@pytest.mark.parametrize(
    ("sid", "keyword"),
    [
        ("sleep", "Temps dépassé"),
        ("loop", "Temps dépassé"),
        ("os_exit", "noyau Python s'est arrêté"),
        ("segfault", "noyau Python s'est arrêté"),
        ("fork_bomb", "processus"),
    ],
)
def test_crash_or_timeout_costs_only_what_it_affects(batch: Batch, sid: str, keyword: str) -> None:
    """Is a killed, stuck or crashed run reported to the student, every function still graded?"""
    result = batch[sid]
    assert result.failure and keyword in result.failure, result.failure
    assert result.score == FULL, _failed(result)


def test_floods_are_capped_and_reported(batch: Batch) -> None:
    """Memory bomb, 100 MB of stdout, a 50 MB image: full marks, outputs truncated with a note."""
    result = batch["flood"]
    assert result.score == FULL, _failed(result)
    assert "Sorties tronquées" in (result.failure or "")
    assert "MEMORY:refused" in batch.outputs("flood")
    assert batch.course.autograded_notebook("flood").stat().st_size < 4 * 1024 * 1024


def test_escape_attempts_all_fail(batch: Batch) -> None:
    """Network, pip, instructor files, the gradebook, another student, the grader's env: all blocked."""
    result = batch["escape"]
    assert result.score == FULL, _failed(result)
    text = batch.outputs("escape")
    attempts = [line for line in text.splitlines() if line.startswith("ESCAPE:")]
    reads = [a for a in attempts if not a.startswith("ESCAPE:write-")]
    assert len(reads) == 13, attempts
    assert all(":blocked" in a for a in reads), attempts
    assert "SECRET:None" in text and SECRET_VALUE not in text
    assert all(not p.exists() for p in batch.host_writes)


def test_tampered_test_cells_change_nothing(batch: Batch) -> None:
    """Edited, deleted, duplicated test cells, raised points, renamed grade_ids: same as the release."""
    cheat, td = batch["cheat_tests"], batch[TD]
    assert [(c.check_id, c.passed) for c in cheat.checks] == [
        (c.check_id, c.passed) for c in td.checks
    ]
    assert (cheat.score, cheat.max_score) == (td.score, FULL)


def test_forged_probe_and_artifacts_are_ignored(batch: Batch) -> None:
    """A replaced tdkit.untrusted.probe.run_probe and fake artifacts cannot turn a failing check into a pass."""
    cheat, td = batch["cheat_probe"], batch[TD]
    assert "train/step_called" in _failed(td) and FAKE_TRAIN["events"]
    assert _failed(cheat) == _failed(td)
    assert cheat.score == td.score


def test_patched_savers_make_the_probe_refuse(batch: Batch) -> None:
    """Monkeypatched builtins/json/numpy: the probe refuses in that kernel and says why; the API is
    probed again in a fresh kernel (definitions only), so the score is the release's, no more."""
    result = batch["cheat_savers"]
    assert "sonde du correcteur a été refusée" in (result.failure or "")
    for name in ("builtins.AssertionError", "json.dump", "numpy.savez"):
        assert name in result.failure
    assert _failed(result) == _failed(batch[TD])


def test_always_equal_and_nan_values_fail(batch: Batch) -> None:
    """Objects equal to everything and NaN matrices fail their own checks, and only those."""
    result = batch["cheat_values"]
    failed = _failed(result)
    assert {"predict/matches_reference", "confusion_matrix/counts"} <= failed
    assert {f.split("/")[0] for f in failed} <= {"predict", "accuracy", "confusion_matrix"}
    assert result.score < FULL


@pytest.mark.parametrize(
    ("sid", "keyword"),
    [
        ("broken_json", "JSON"),
        ("broken_latin1", "UTF-8"),
        ("broken_empty", "vide"),
        ("broken_zip", "zip"),
        ("broken_5000", "cellules"),
        ("symlink", "lien symbolique"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(batch: Batch, sid: str, keyword: str) -> None:
    """Broken files get zero and a French reason; a symlink (here to the full solution) is never read."""
    result = batch[sid]
    assert result.score == 0.0
    assert result.failure and keyword in result.failure, result.failure


def test_nbformat3_is_graded(batch: Batch) -> None:
    """An old nbformat 3 notebook is upgraded and graded like any other."""
    result = batch["broken_v3"]
    assert result.score == FULL, (result.failure, _failed(result))


def test_no_file_modified(batch: Batch) -> None:
    """No submission and no instructor file changed; the symlink still points where it did."""
    assert _sha(sorted(batch.course.submitted.rglob("*.ipynb"))) == batch.before
    assert _sha(_instructor_files(batch.course)) == batch.instructor
    assert batch.course.submitted_notebook("symlink").is_symlink()


def test_gradebook_matches_results(batch: Batch, tmp_path: Path) -> None:
    """nbgrader export shows exactly tdkit's scores, hostile students included, max unchanged."""
    rows = nbgrader_export(batch.course.root, tmp_path / "grades.csv")
    for sid, student in batch.run.results.students.items():
        if sid in rows:
            assert float(rows[sid]["score"]) == pytest.approx(student.score), sid
            assert float(rows[sid]["max_score"]) == FULL + 6, sid  # 6 points of free-text answers


def _interrupt_at_first_result(command: list[str], root: Path, sig: signal.Signals) -> int:
    """Start ``tdkit grade``, send ``sig`` once one student is recorded and the next is running."""
    # Started in the background of a script, the tests inherit SIGINT ignored, and so would tdkit:
    # a Python handler here is reset to the default one in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("[1/3]"):
            break
    process.send_signal(sig)
    # Read to the end: every process that writes there (the grader, its zygote) has then exited.
    process.stdout.read()
    return process.wait(timeout=300)


def test_sigint_and_sigkill_mid_batch_then_rerun_gives_identical_results(
    batch: Batch, tmp_path: Path
) -> None:
    """`tdkit grade` stopped by SIGINT, then by SIGKILL, mid-batch, then run again: the same checks
    as the batch, a whole gradebook, no submission changed."""
    course = Course(copy_course(tmp_path / "course"))
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write("\nc.TdkitLimits.cell_timeout = 20\nc.TdkitLimits.run_timeout = 120\n")
    release(course, verify=False)
    for sid in (OK, TD):
        target = course.submitted_notebook(sid)
        target.parent.mkdir(parents=True)
        target.write_bytes(batch.course.submitted_notebook(sid).read_bytes())
    # Graded second, and still running when the first result is out, however long the first
    # judgement takes (a process whose oracle is not cached yet trains it then): the signals
    # always land mid-batch.
    slow = solution_nb()
    slow.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(12)"))
    write(course.submitted, SLOW, course.assignment, slow)
    before = _sha(sorted(course.submitted.rglob("*.ipynb")))
    # One worker: runs one after the other, in the order of the student ids.
    tdkit = [os.path.join(os.path.dirname(sys.executable), "tdkit"), "grade", "--workers", "1"]
    assert _interrupt_at_first_result(tdkit, course.root, signal.SIGINT) != 0
    assert _interrupt_at_first_result(tdkit, course.root, signal.SIGKILL) == -signal.SIGKILL
    again = subprocess.run(
        tdkit, cwd=course.root, capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stdout + again.stderr
    results = json.loads((course.reports / "results.json").read_text(encoding="utf-8"))["students"]
    for sid in (OK, TD):
        expected = {c.check_id: c.passed for c in batch[sid].checks}
        assert {k: v["passed"] for k, v in results[sid]["checks"].items()} == expected, sid
    rows = nbgrader_export(course.root, tmp_path / "export.csv")
    assert {sid: float(rows[sid]["score"]) for sid in (OK, TD)} == {OK: FULL, TD: batch[TD].score}
    assert _sha(sorted(course.submitted.rglob("*.ipynb"))) == before


def test_markup_keeps_full_marks_and_is_made_inert(batch: Batch) -> None:
    """Is the submission full of active markup (answers, HTML/JavaScript/SVG/Markdown outputs,
    streams, error) graded in full, and does its autograded notebook keep none of it active?"""
    result = batch["markup"]
    assert result.score == FULL and result.failure is None, result.failure
    nb = nbformat.read(batch.course.autograded_notebook("markup"), as_version=4)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    html = [
        o.data["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert html and not any(
        re.search(r"<script|\son\w+=|javascript:|<iframe|<base|<meta|<style|<link", h) for h in html
    )
    answers = [
        c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("answer_")
    ]
    assert len(answers) == 3 and all("<" not in a and "LISIBLE" in a for a in answers)
    assert "Sortie JavaScript supprimée" in batch.outputs("markup")
