"""End to end: real submissions through the sandboxed run, the hidden checks and the gradebook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import nbgrader_export
from servers import MARKUP, shared_graded_course

from tdkit.core.course import Course
from tdkit.trusted.checks import NOT_EVALUATED, UNCHANGED
from tdkit.trusted.grade import GradeRun, grade_all

STUDENTS = {"sol", "td", "answered", "crash", "last_year", MARKUP}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    """The run's shared graded course (``servers.shared_graded_course``), read, never changed."""
    return shared_graded_course(tmp_path_factory)


def test_results_json_has_the_contract_shape(graded: tuple[Course, GradeRun]) -> None:
    """Does reports/td_cnn/results.json have exactly the shape other tools read?"""
    course, _ = graded
    record = json.loads((course.reports / "results.json").read_text(encoding="utf-8"))
    assert record["assignment"] == "td_cnn"
    assert set(record["students"]) == STUDENTS
    for student in record["students"].values():
        assert student["checks"], "every student has checks"
        for check_id, check in student["checks"].items():
            assert "/" in check_id
            assert isinstance(check["passed"], bool)
            assert isinstance(check["points"], float) and isinstance(check["max_points"], float)
            assert isinstance(check["message"], str) and check["message"]
    csv = (course.reports / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert csv[0].startswith("student_id,") and len(csv) == len(STUDENTS) + 1


def test_solution_gets_full_marks(graded: tuple[Course, GradeRun]) -> None:
    """Does the reference solution pass every hidden check?"""
    _, run = graded
    sol = run.results.students["sol"]
    assert [c.check_id for c in sol.checks if not c.passed] == []
    assert sol.score == sol.max_score == 21.0
    curve = sol.figures["loss_history"]
    assert curve["student"] == pytest.approx(curve["reference"], rel=1e-4)


def test_td_as_written_loses_the_training_checks(graded: tuple[Course, GradeRun]) -> None:
    """Is the TD's loop caught as 'step() never called', with a French message saying how to fix it?"""
    _, run = graded
    checks = {c.check_id: c for c in run.results.students["answered"].checks}
    assert not checks["train/step_called"].passed
    assert "optimizer.step()" in checks["train/step_called"].message
    assert not checks["train/matches_reference"].passed
    assert not checks["predict/matches_reference"].passed  # not written yet in the release


def test_crash_mid_way_is_recorded_and_the_rest_still_graded(
    graded: tuple[Course, GradeRun],
) -> None:
    """Does a cell that raises show with its traceback, while every function is still probed?"""
    _, run = graded
    crash = run.results.students["crash"]
    assert [e.ename for e in crash.errors] == ["NameError"]
    assert "predcit" in crash.errors[0].traceback
    assert crash.score == crash.max_score


def test_nbgrader_export_shows_tdkit_scores(
    graded: tuple[Course, GradeRun], tmp_path: Path
) -> None:
    """Does nbgrader's own `nbgrader export` read the scores tdkit wrote to the gradebook?"""
    course, run = graded
    rows = nbgrader_export(course.root, tmp_path / "grades.csv")
    for sid, student in run.results.students.items():
        assert float(rows[sid]["score"]) == pytest.approx(student.score), sid


def test_autograded_notebook_for_formgrader(graded: tuple[Course, GradeRun]) -> None:
    """Is the executed notebook, hidden tests restored, left where formgrader looks for it?"""
    course, _ = graded
    nb = nbformat.read(course.autograded_notebook("sol"), as_version=4)
    assert any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells)


def test_regrading_gives_identical_results(graded: tuple[Course, GradeRun], tmp_path: Path) -> None:
    """Is grading idempotent, and does --student regrade one student while keeping the others?"""
    shared, first = graded
    course = Course(shutil.copytree(shared.root, tmp_path / "course", symlinks=True))
    again = grade_all(course, progress=lambda line: None)
    for sid, student in first.results.students.items():
        assert again.results.students[sid].checks == student.checks
    only = grade_all(course, student="answered", progress=lambda line: None)
    assert only.graded == ["answered"]
    assert set(only.results.students) == STUDENTS
    assert only.results.students["answered"].checks == first.results.students["answered"].checks
    assert only.results.students["sol"].checks == first.results.students["sol"].checks


def test_reports_are_written(graded: tuple[Course, GradeRun]) -> None:
    """Is there one HTML report per student and a class summary?"""
    course, _ = graded
    html = course.reports / "html"
    assert {p.name for p in html.glob("*.html")} >= {
        "index.html",
        *(f"{sid}.html" for sid in STUDENTS),
    }


def test_not_the_td_gets_one_message_at_the_top(graded: tuple[Course, GradeRun]) -> None:
    """Is last year's TD given 0 with one French message at the top (the graded cells it lacks), not twenty?"""
    course, run = graded
    result = run.results.students["last_year"]
    assert result.refused and result.failure and "n'est pas celui distribué" in result.failure
    assert "`train`" in result.failure and "`td_cnn.ipynb`" in result.failure
    assert result.score == 0 and result.max_score == 21.0
    assert {c.message for c in result.checks} == {NOT_EVALUATED}
    page = (course.reports / "html" / "last_year.html").read_text(encoding="utf-8")
    assert page.count("n&#39;est pas celui distribué") == 1
    assert "Notebook non évalué" in page and "Arrêt de l&#39;exécution" not in page


def test_untouched_release_says_nothing_was_changed(graded: tuple[Course, GradeRun]) -> None:
    """Is the release submitted as distributed graded as such, with « Rien n'a été modifié » once at the top?"""
    course, run = graded
    result, td = run.results.students["td"], run.results.students["answered"]
    assert (
        result.notice
        and result.notice.startswith("Rien n'a été modifié")
        and result.failure is None
    )
    assert [(c.check_id, c.passed) for c in result.checks] == [
        (c.check_id, c.passed) for c in td.checks
    ]
    assert {c.message for c in result.checks if not c.passed} == {UNCHANGED}
    assert (
        td.notice is None
        and "NotImplementedError"
        in {c.check_id: c.message for c in td.checks}["predict/matches_reference"]
    )
    page = (course.reports / "html" / "td.html").read_text(encoding="utf-8")
    assert page.count("Rien n&#39;a été modifié :") == 1
