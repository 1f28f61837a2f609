"""A semester of grading: a fresh clone grades for real, and each `tdkit grade` regrades only what changed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, copy_course, nbgrader_export
from nbgrader.api import Gradebook

from grader_tests.td_cnn.assignment import Parameters
from tdkit.core.config import Limits
from tdkit.core.course import Course
from tdkit.intake.collect import collect
from tdkit.release.generate import release
from tdkit.trusted.grade import GradeRun, grade_all
from tdkit.trusted.incremental import ALL, CHANGED, GRADER_FAILED, NEW, grader_fingerprint

EXAMPLES = REPO / "examples" / "td_cnn" / "submissions"
EXPECTED = json.loads((EXAMPLES / "expected.json").read_text(encoding="utf-8"))
FULL = 21.0
TDKIT = os.path.join(os.path.dirname(sys.executable), "tdkit")


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _clone(tmp_path: Path) -> Path:
    """A `git clone` of a commit holding the course as committed: no gradebook, no submissions."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin = copy_course(tmp_path / "origin")
    _git(origin, "init", "-q")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-q", "-m", "course")
    _git(tmp_path, "clone", "-q", str(origin), "clone")
    clone = tmp_path / "clone"
    assert not (clone / "gradebook.db").exists()
    return clone


def _export(path: Path, students: dict[str, str]) -> Path:
    """A Moodle export: participant id -> example submission name."""
    with zipfile.ZipFile(path, "w") as zf:
        for sid, example in students.items():
            zf.write(
                EXAMPLES / f"{example}.ipynb",
                f"Étudiant {sid}_{sid}_assignsubmission_file_/td_cnn.ipynb",
            )
    return path


def _tdkit(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TDKIT, *args], cwd=root, capture_output=True, text=True, timeout=600, check=False
    )


def _nbgrader_export(root: Path, out: Path) -> dict[str, float]:
    return {sid: float(row["score"]) for sid, row in nbgrader_export(root, out).items()}


def test_fresh_clone_collects_and_grades_for_real(tmp_path: Path) -> None:
    """On a clone with no gradebook, do `tdkit collect` then `tdkit grade` give the real scores?"""
    clone = _clone(tmp_path)
    collected = _tdkit(
        clone,
        "collect",
        str(_export(tmp_path / "export.zip", {"101": "alice_solution", "102": "bob_td_loop_kept"})),
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    graded = _tdkit(clone, "grade", "--workers", "2")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert "registered the committed release/td_cnn/td_cnn.ipynb in the gradebook" in graded.stdout
    results = json.loads((clone / "reports/td_cnn/results.json").read_text(encoding="utf-8"))[
        "students"
    ]
    assert results["101"]["score"] == FULL
    failed = {cid for cid, check in results["102"]["checks"].items() if not check["passed"]}
    assert failed == set(EXPECTED["bob_td_loop_kept"]["failed"])
    assert "MissingEntry" not in graded.stdout
    assert _nbgrader_export(clone, tmp_path / "grades.csv") == {
        sid: student["score"] for sid, student in results.items()
    }
    assert not subprocess.run(
        ["git", "status", "--porcelain", "release", "source"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout, "release/ was rewritten"


def test_stale_release_on_a_fresh_clone_stops_before_grading(tmp_path: Path) -> None:
    """When the committed release is not what the source releases, does `tdkit grade` stop before
    grading anyone, naming `tdkit release`, and leave no grade anywhere?"""
    clone = _clone(tmp_path)
    release_nb = clone / "release/td_cnn/td_cnn.ipynb"
    release_nb.write_text(
        release_nb.read_text(encoding="utf-8").replace("Quelques règles", "Des règles"),
        encoding="utf-8",
    )
    _tdkit(clone, "collect", str(_export(tmp_path / "export.zip", {"101": "alice_solution"})))
    graded = _tdkit(clone, "grade")
    assert graded.returncode == 2
    assert "tdkit release" in graded.stderr and "nobody was graded" in graded.stderr
    assert not (clone / "reports").exists()
    assert _nbgrader_export(clone, tmp_path / "grades.csv") == {}


class Course3:
    """A course graded once, then changed step by step by the tests below (module order)."""

    def __init__(self, root: Path) -> None:
        self.course = Course(root)
        self.runs: list[GradeRun] = []
        self.lines: list[str] = []

    def submit(self, sid: str, example: str) -> None:
        target = self.course.submitted_notebook(sid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"{example}.ipynb", target)

    def grade(self, **options: object) -> GradeRun:
        self.lines = []
        run = grade_all(self.course, progress=self.lines.append, **options)  # type: ignore[arg-type]
        self.runs.append(run)
        return run

    def files(self) -> dict[str, bytes]:
        reports = self.course.reports
        return {p.name: p.read_bytes() for p in (reports / "results.json", reports / "grades.csv")}


@pytest.fixture(scope="module")
def semester(tmp_path_factory: pytest.TempPathFactory) -> Course3:
    course = Course3(copy_course(tmp_path_factory.mktemp("semester")))
    release(course.course, verify=False)
    course.submit("a", "alice_solution")
    course.submit("b", "bob_td_loop_kept")
    first = course.grade(workers=2)
    assert first.plan.grade == {"a": NEW, "b": NEW}
    return course


def test_unchanged_students_are_skipped_and_said_so(semester: Course3) -> None:
    """Graded again with nothing changed, is nobody run, are the files kept and is it reported?"""
    before = semester.files()
    pages = {
        p.name: p.stat().st_mtime_ns for p in (semester.course.reports / "html").glob("*.html")
    }
    run = semester.grade()
    assert run.graded == [] and run.plan.keep == ["a", "b"]
    assert semester.lines[0].startswith("skipped 2 unchanged submission(s)")
    assert semester.files() == before
    now = {p.name: p.stat().st_mtime_ns for p in (semester.course.reports / "html").glob("*.html")}
    assert {name: now[name] for name in ("a.html", "b.html")} == {
        n: pages[n] for n in ("a.html", "b.html")
    }


def test_nothing_changed_touches_no_page_nor_gradebook(semester: Course3) -> None:
    """With nothing changed, are the summary and every page left unwritten, the gradebook's file
    byte for byte as it was, and results.json and grades.csv identical?"""
    html = semester.course.reports / "html"
    pages = {p.name: p.stat().st_mtime_ns for p in html.glob("*.html")}
    gradebook = (semester.course.root / "gradebook.db").read_bytes()
    before = semester.files()
    assert semester.grade().graded == []
    assert {
        p.name: p.stat().st_mtime_ns for p in html.glob("*.html")
    } == pages and "index.html" in pages
    assert (semester.course.root / "gradebook.db").read_bytes() == gradebook
    assert semester.files() == before


def test_nothing_changed_loads_no_heavy_library(semester: Course3) -> None:
    """Does a grade with nothing changed run without importing torch, datasets or matplotlib (seconds
    of start-up each, paid by a class with late submissions at every `tdkit grade`)?"""
    code = (
        "import sys\nfrom pathlib import Path\nfrom tdkit.core.course import Course\nfrom tdkit.trusted.grade import grade_all\n"
        "run = grade_all(Course(Path(sys.argv[1])), progress=lambda line: None)\n"
        "print(run.graded, sorted(m for m in ('torch', 'datasets', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(semester.course.root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[] []"


def test_changed_and_new_submissions_are_graded_the_others_kept(
    semester: Course3, tmp_path: Path
) -> None:
    """A late submission and a corrected one: are exactly those two graded, and do results.json,
    grades.csv, the gradebook and the pages all show the new scores beside the kept one?"""
    kept = semester.runs[0].results.students["a"]
    semester.submit("b", "alice_solution")  # b fixed their loop
    semester.submit("c", "emma_percent")  # late
    run = semester.grade()
    assert run.plan.grade == {"b": CHANGED, "c": NEW} and run.plan.keep == ["a"]
    students = run.results.students
    assert students["a"].checks == kept.checks and students["a"].fingerprint == kept.fingerprint
    assert students["b"].score == FULL
    assert {c.check_id for c in students["c"].checks if not c.passed} == set(
        EXPECTED["emma_percent"]["failed"]
    )
    rows = list(csv.DictReader((semester.course.reports / "grades.csv").open(encoding="utf-8")))
    assert {r["student_id"]: float(r["auto_score"]) for r in rows} == {
        s: r.score for s, r in students.items()
    }
    assert _nbgrader_export(semester.course.root, tmp_path / "export.csv") == {
        s: r.score for s, r in students.items()
    }
    html = semester.course.reports / "html"
    assert "b.html" in (html / "index.html").read_text(encoding="utf-8")
    assert (html / "c.html").is_file()


class DyingWorker(ThreadPoolExecutor):
    """An executor whose process dies under one student's job, as a lost Dask worker does."""

    def __init__(self, victim: str) -> None:
        super().__init__(max_workers=1)
        self.victim = victim

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if args[0].student_id == self.victim:
            future: Future[object] = Future()
            future.set_exception(OSError("the worker process died"))
            return future
        return super().submit(fn, *args, **kwargs)


def test_failure_on_the_graders_side_is_graded_again(semester: Course3) -> None:
    """A run lost to the grader's machine, not the notebook: is it marked so and graded again next time?"""
    semester.submit("c", "alice_solution")
    with DyingWorker("c") as executor:
        lost = semester.grade(executor=executor)
    assert lost.plan.grade == {"c": CHANGED}
    assert lost.results.students["c"].grader_failure and lost.results.students["c"].score == 0
    run = semester.grade()
    assert run.plan.grade == {"c": GRADER_FAILED}
    assert not run.results.students["c"].grader_failure and run.results.students["c"].score == FULL


def test_a_change_of_the_grader_regrades_everyone(semester: Course3) -> None:
    """After an edit of grader_tests/, is every student graded again, the reason naming the part?"""
    checks = semester.course.grader_tests / "checks_train.py"
    checks.write_text(
        checks.read_text(encoding="utf-8") + "\n# relu par un second correcteur\n", encoding="utf-8"
    )
    run = semester.grade(workers=2)
    assert run.plan.grade == {sid: "grader changed: grader_tests" for sid in ("a", "b", "c")}
    assert {sid: s.score for sid, s in run.results.students.items()} == {
        "a": FULL,
        "b": FULL,
        "c": FULL,
    }


def test_all_forces_a_full_regrade(semester: Course3) -> None:
    """Does --all grade everyone again, with the same checks?"""
    before = {sid: r.checks for sid, r in semester.runs[-1].results.students.items()}
    run = semester.grade(everyone=True, workers=2)
    assert run.plan.grade == {sid: ALL for sid in ("a", "b", "c")}
    assert {sid: r.checks for sid, r in run.results.students.items()} == before


def test_killed_mid_batch_then_rerun_is_consistent(semester: Course3, tmp_path: Path) -> None:
    """`tdkit grade` SIGKILLed after its first new result, then run again: are results.json,
    grades.csv, the gradebook and the pages consistent, and is the next run a no-op?"""
    semester.submit("a", "farid_transposed_precision")
    semester.submit("b", "gaelle_sum_and_x0")
    process = subprocess.Popen(
        [TDKIT, "grade", "--workers", "1"],
        cwd=semester.course.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("[1/2]"):
            break
    process.kill()
    process.stdout.read()
    assert process.wait(timeout=60) == -9
    rerun = _tdkit(semester.course.root, "grade")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    results = json.loads((semester.course.reports / "results.json").read_text(encoding="utf-8"))[
        "students"
    ]
    for sid, example in (("a", "farid_transposed_precision"), ("b", "gaelle_sum_and_x0")):
        failed = {cid for cid, check in results[sid]["checks"].items() if not check["passed"]}
        assert failed == set(EXPECTED[example]["failed"]), sid
    scores = {sid: student["score"] for sid, student in results.items()}
    assert _nbgrader_export(semester.course.root, tmp_path / "export.csv") == scores
    rows = csv.DictReader((semester.course.reports / "grades.csv").open(encoding="utf-8"))
    assert {r["student_id"]: float(r["auto_score"]) for r in rows} == scores
    assert semester.grade().graded == []


def test_a_pair_is_written_again_only_when_its_notebook_changes(tmp_path: Path) -> None:
    """A pair graded once: graded again with nothing changed, is the gradebook left unwritten; once
    the pair's notebook changes, do the partner's result and gradebook record follow it?"""
    course = Course(copy_course(tmp_path / "course"))
    release(course, verify=False)
    groups = tmp_path / "groups.csv"
    groups.write_text("group,student_id\nP,101\nP,102\n", encoding="utf-8")
    collect(course, _export(tmp_path / "export.zip", {"101": "bob_td_loop_kept"}), groups=groups)
    first = grade_all(course, progress=lambda line: None)
    assert (
        first.results.students["102"].graded_with == "101"
        and first.results.students["102"].score < FULL
    )
    gradebook = (course.root / "gradebook.db").read_bytes()
    assert grade_all(course, progress=lambda line: None).graded == []
    assert (course.root / "gradebook.db").read_bytes() == gradebook
    shutil.copy(EXAMPLES / "alice_solution.ipynb", course.submitted_notebook("101"))
    run = grade_all(course, progress=lambda line: None)
    assert run.plan.grade == {"101": CHANGED}
    assert (run.results.students["102"].graded_with, run.results.students["102"].score) == (
        "101",
        FULL,
    )
    with Gradebook(course.db_url, course.course_id) as gb:
        assert gb.find_submission("td_cnn", "102").score == FULL


@pytest.mark.parametrize(
    ("change", "part"),
    [
        ({"limits": Limits(cell_timeout=119)}, "limits"),
        ({"profile": Parameters(N_EPOCHS=2).profile()}, "profile"),
        ({"file": "reference/minibatch.py"}, "reference"),
        ({"file": "release/td_cnn/td_cnn.ipynb"}, "release"),
        ({"file": "grader_tests/td_cnn/oracle.py"}, "grader_tests"),
    ],
    ids=["limits", "profile", "reference", "release", "grader_tests"],
)
def test_every_part_of_the_grader_is_in_the_fingerprint(
    tmp_path: Path, change: dict, part: str
) -> None:
    """Does each part of the grader change its own part of the fingerprint, and only it?"""
    course = Course(copy_course(tmp_path / "course"))
    limits, profile = Limits(), Parameters().profile()
    before = grader_fingerprint(course, limits, profile)
    if "file" in change:
        path = course.root / change["file"]
        path.write_bytes(path.read_bytes() + b"\n")
    after = grader_fingerprint(course, change.get("limits", limits), change.get("profile", profile))
    assert [name for name in before if before[name] != after[name]] == [part]
