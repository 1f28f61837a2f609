"""The course's grade: automatic points + the TA's hand grading - the late penalty, out of the
assignment's total, from the gradebook, in every output, kept through every regrade.

One French Moodle course, graded once: Paul and Élise hand in the solution (21/21 automatic, three
written answers worth 1 + 1 + 4), Alice and Léa a pair's notebook that kept the TD's loop, 2 h 05
late at 4 points per started day. A TA grades in formgrader, in headless Chromium (Paul), and
through nbgrader's gradebook API as formgrader's handlers do (the pair, an override); Élise's
answers are never graded. Each stage keeps what it exported, so that later stages change nothing
the earlier tests read.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner
from conftest import REPO, copy_course, td_cnn
from nbgrader.api import Gradebook
from servers import chromium, formgrader, script_env

from tdkit.cli import main
from tdkit.core.course import Course
from tdkit.intake.collect import collect
from tdkit.intake.worksheet import read_worksheet
from tdkit.release.generate import release
from tdkit.reports.html import render_student
from tdkit.reports.moodle import MoodleExport, comments_text, export_moodle
from tdkit.reports.results import StudentResult
from tdkit.trusted.course_grade import course_grades, keep_course_grades
from tdkit.trusted.grade import grade_all

EXAMPLES = REPO / "examples" / "td_cnn" / "submissions"
WORKSHEET = Path(__file__).parent / "files" / "collect" / "worksheet_en.csv"
CONFIG = """
c.TdkitDeadlines.duedate = "2024-12-03 12:00"
c.TdkitDeadlines.extensions = {"101235": "2024-12-05 12:00"}
c.LatePenalty.points_per_day = 4.0
"""
PAUL, ELISE, ALICE, LEA = "101238", "101235", "101234", "101237"
COMMENT = "Bonne piste <b>Adam</b>, mais mesurez sur le test : « 60 % » sans protocole ne dit rien."
PARTNER_COMMENT = "Vu en séance avec Léa : exemples bien choisis."
REASON = "Boucle vérifiée à la main : seul le retour de la perte est faux."


@dataclass
class Stage:
    """What the outputs said at one moment of the course."""

    results: dict[str, Any]  # results.json's students
    grades: dict[str, str]  # participant -> worksheet grade (out of ``max_grade``)
    comments: dict[str, list[str]]  # participant -> worksheet comment lines
    pages: dict[str, str]  # participant -> feedback file
    exported: MoodleExport


def _worksheet_out_of(course: Course, max_grade: str) -> Path:
    """The worksheet, as Moodle gives it for an assignment whose maximum grade is ``max_grade``."""
    text = WORKSHEET.read_text(encoding="utf-8-sig").replace(",20.00,", f",{max_grade},")
    path = course.root / f"Grades-{max_grade}.csv"
    path.write_text("\ufeff" + text.replace("12.50", ""), encoding="utf-8")
    return path


def _stage(course: Course, out: Path, *, provisional: bool = False) -> Stage:
    results = course_grades(course)
    exported = export_moodle(course, results, out, provisional=provisional)
    keep_course_grades(course, results)
    sheet = read_worksheet(exported.worksheet)
    grade, feedback = sheet.column("grade"), sheet.column("feedback")
    assert grade is not None and feedback is not None
    rows = {sheet.participant_id(r): r for r in sheet.rows}
    with zipfile.ZipFile(exported.feedback_zip) as zf:
        pages = {n.split("_")[1]: zf.read(n).decode("utf-8") for n in zf.namelist()}
    return Stage(
        json.loads((course.reports / "results.json").read_text(encoding="utf-8"))["students"],
        {sid: row[grade] for sid, row in rows.items() if sid},
        {sid: comments_text(row[feedback]) for sid, row in rows.items() if sid},
        pages,
        exported,
    )


def _collect(course: Course, max_grade: str) -> None:
    archive = course.root / "submissions.zip"
    solution = (EXAMPLES / "alice_solution.ipynb").read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "Alice Martin_101234_assignsubmission_file_/td_cnn.ipynb",
            (EXAMPLES / "bob_td_loop_kept.ipynb").read_bytes(),
        )
        zf.writestr("Élise Durand_101235_assignsubmission_file_/td_cnn.ipynb", solution)
        zf.writestr(
            "Léa Petit_101237_assignsubmission_file_/td_cnn.ipynb",
            (EXAMPLES / "bob_td_loop_kept.ipynb").read_bytes(),
        )
        zf.writestr("Paul Girard_101238_assignsubmission_file_/td_cnn.ipynb", solution)
    groups = course.root / "groups.csv"
    groups.write_text("group,student_id\nBinôme 1,101234\nBinôme 1,101237\n", encoding="utf-8")
    collect(
        course, archive, force=True, worksheet=_worksheet_out_of(course, max_grade), groups=groups
    )


def _ta_grades(
    course: Course,
    student: str,
    scores: dict[str, float | None],
    comments: dict[str, str] | None = None,
) -> None:
    """What formgrader's grade and comment handlers do when a TA types a score or a comment."""
    with Gradebook(course.db_url, course.course_id) as gb:
        for cell, score in scores.items():
            grade = gb.find_grade(cell, "td_cnn", "td_cnn", student)
            grade.manual_score = score
            grade.needs_manual_grade = score is None and grade.auto_score is None
        for cell, text in (comments or {}).items():
            gb.find_comment(cell, "td_cnn", "td_cnn", student).manual_comment = text
        gb.db.commit()


def _formgrader_grades_paul(course: Course, workdir: Path) -> None:
    """A TA opens Paul's submission in formgrader, types 1 for the first answer, 0 for the others,
    and a comment on the Bricolage answer; each is saved by formgrader's own scripts."""
    with formgrader(course.root, workdir) as (base, token), chromium() as context:
        page = context.new_page()
        page.goto(f"{base}/formgrader?token={token}")
        with Gradebook(course.db_url, course.course_id) as gb:
            submission = gb.find_submission_notebook("td_cnn", "td_cnn", PAUL).id
        page.goto(f"{base}/formgrader/submissions/{submission}/?index=0")
        page.wait_for_selector("input.score#answer_examples")
        for cell, value in (
            ("answer_examples", "1"),
            ("answer_accuracy", "0"),
            ("answer_bricolage", "0"),
        ):
            with page.expect_response(
                lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT"
            ):
                page.fill(f"input.score#{cell}", value)
                page.press(f"input.score#{cell}", "Tab")
        with page.expect_response(
            lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT"
        ):
            page.fill("textarea#answer_bricolage-comment", COMMENT)
            page.press("textarea#answer_bricolage-comment", "Tab")
        page.close()


@dataclass
class Course_:
    course: Course
    graded: Stage  # right after grading: nobody graded by hand
    provisional: Stage
    by_ta: Stage  # Paul and the pair graded, out of 27
    by_ta_21: Stage  # the same on a sheet out of 21
    overridden: Stage  # then a TA overrides one of Paul's automatic cells, with a reason
    regraded: Stage  # after a change of grader_tests/: everything graded again
    changed: Stage  # Paul handed in a new Bricolage answer, graded again
    export_csv: list[dict[str, str]]  # `nbgrader export` after the TA's grading


@pytest.fixture(scope="module")
def semester(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Course_]:
    root = copy_course(tmp_path_factory.mktemp("course-grade"))
    course = Course(root)
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(CONFIG)
    release(course, verify=False)
    _collect(course, "27.00")
    grade_all(course, progress=lambda line: None)
    out = tmp_path_factory.mktemp("exports")
    graded = _stage(course, out / "graded")
    provisional = _stage(course, out / "provisional", provisional=True)

    _formgrader_grades_paul(course, tmp_path_factory.mktemp("formgrader"))
    _ta_grades(
        course, ALICE, {"answer_examples": 1.0, "answer_accuracy": 1.0, "answer_bricolage": 0.0}
    )
    by_ta = _stage(course, out / "by-ta")
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "nbgrader"), "export", "--to", str(out / "nbgrader.csv")],
        cwd=root,
        check=True,
        capture_output=True,
        env=script_env(),
    )
    export_csv = list(
        csv.DictReader(io.StringIO((out / "nbgrader.csv").read_text(encoding="utf-8")))
    )
    _collect(course, "21.00")
    by_ta_21 = _stage(course, out / "by-ta-21")
    # An override of an automatic cell, its reason on the cell of the function it checks.
    _ta_grades(course, PAUL, {"test_learning_curve": 1.0}, {"plot_learning_curve": REASON})
    # A TA comments Léa's copy of the pair's notebook rather than Alice's, where it is graded.
    _ta_grades(course, LEA, {}, {"answer_examples": PARTNER_COMMENT})
    overridden = _stage(course, out / "overridden")

    with open(
        root / "grader_tests" / "td_cnn" / "checks_learning_curve.py", "a", encoding="utf-8"
    ) as checks:
        checks.write("\n# The grader changed: every submission is graded again.\n")
    assert sorted(grade_all(course, progress=lambda line: None).graded) == sorted(
        [ALICE, ELISE, PAUL]
    )
    regraded = _stage(course, out / "regraded")

    notebook = nbformat.read(course.submitted_notebook(PAUL), as_version=4)
    cell = next(
        c
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_bricolage"
    )
    cell.source = "Nouvelle version : Adam à 1e-3, mini-batchs de 64, 62 % sur le test."
    nbformat.write(notebook, course.submitted_notebook(PAUL))
    assert grade_all(course, progress=lambda line: None).graded == [PAUL]
    changed = _stage(course, out / "changed")
    yield Course_(
        course, graded, provisional, by_ta, by_ta_21, overridden, regraded, changed, export_csv
    )
    shutil.rmtree(out, ignore_errors=True)


def test_not_graded_yet_is_not_full_marks(semester: Course_) -> None:
    """Before any hand grading, does every student with written answers keep an empty grade, with
    the export naming who waits for which answers, and nobody at 27?"""
    stage = semester.graded
    for sid in (PAUL, ELISE, ALICE, LEA):
        assert stage.grades[sid] == "", sid
        assert stage.results[sid]["pending"] == [
            "answer_accuracy",
            "answer_bricolage",
            "answer_examples",
        ]
    assert sorted(stage.exported.waiting) == sorted([PAUL, ELISE, ALICE, LEA])
    assert stage.results[PAUL]["automatic"] == 21 and stage.results[PAUL]["maximum"] == 27


def test_provisional_grades_say_so(semester: Course_) -> None:
    """Does --provisional write automatic + what is graded, and say in the comment that it is?"""
    stage = semester.provisional
    assert float(stage.grades[PAUL]) == pytest.approx(21.0)
    assert stage.comments[PAUL][0].startswith("Note provisoire : 21 / 27")
    assert any("En attente de correction à la main" in line for line in stage.comments[PAUL])


def test_hand_grading_reaches_the_worksheet(semester: Course_) -> None:
    """Once a TA has graded in formgrader: 22/27 for Paul (21 automatic + 1 by hand), the pair's
    automatic + 2 - 4, and still no grade for Élise; scaled from 27 to a sheet out of 21 (17.11),
    never from the automatic part alone?"""
    stage, on_21 = semester.by_ta, semester.by_ta_21
    paul, pair = stage.results[PAUL], stage.results[ALICE]
    assert (paul["automatic"], paul["by_hand"], paul["late_penalty"]) == (21.0, 1.0, 0.0)
    assert stage.grades[PAUL] == "22.00"
    assert pair["late_penalty"] == 4.0 and pair["by_hand"] == 2.0
    expected_pair = pair["automatic"] + 2.0 - 4.0
    assert float(stage.grades[ALICE]) == float(stage.grades[LEA]) == pytest.approx(expected_pair)
    assert stage.grades[ELISE] == ""
    assert stage.exported.waiting == {
        ELISE: ["answer_accuracy", "answer_bricolage", "answer_examples"]
    }
    assert on_21.grades[PAUL] == "17.11"
    assert float(on_21.grades[ALICE]) == pytest.approx(expected_pair / 27 * 21, abs=0.005)
    assert stage.comments[PAUL][0] == "Note : 22 / 27 (automatique 21, questions 1 / 6)."


def test_nbgrader_export_agrees(semester: Course_) -> None:
    """Does `nbgrader export` give every graded student the grade tdkit sends to Moodle?"""
    rows = {r["student_id"]: r for r in semester.export_csv}
    for sid in (PAUL, ALICE, LEA):
        assert float(rows[sid]["score"]) == pytest.approx(float(semester.by_ta.grades[sid])), sid
        assert float(rows[sid]["max_score"]) == 27.0


def test_the_tas_comment_and_override_reach_the_student(semester: Course_) -> None:
    """Is the TA's comment in Paul's feedback file and Moodle comment, inert, and the override
    counted and shown with its reason?"""
    page, lines = semester.by_ta.pages[PAUL], semester.by_ta.comments[PAUL]
    assert "Bonne piste &lt;b&gt;Adam&lt;/b&gt;" in page and "<b>Adam" not in page
    assert f"Commentaire du correcteur (answer_bricolage) : {COMMENT}" in lines
    overridden = semester.overridden
    assert overridden.results[PAUL]["automatic"] == 20.0
    assert float(overridden.grades[PAUL]) == pytest.approx(21.0 / 27 * 21, abs=0.005)
    assert 'id="modifications"' in overridden.pages[PAUL] and REASON in overridden.pages[PAUL]
    assert any(
        line.startswith("test_learning_curve modifié par le correcteur, 2 → 1")
        for line in overridden.comments[PAUL]
    )


def test_a_comment_on_the_partners_copy_reaches_the_pair(semester: Course_) -> None:
    """Is a TA's comment written on the other member's copy kept, for both members of the pair?"""
    line = f"Commentaire du correcteur (answer_examples) : {PARTNER_COMMENT}"
    assert line in semester.overridden.comments[ALICE]
    assert line in semester.overridden.comments[LEA]
    assert semester.overridden.grades[ALICE] == semester.by_ta_21.grades[ALICE]


def test_short_moodle_comment(semester: Course_) -> None:
    """One line per function that lost points (not per check), and the penalty, for the pair?"""
    lines = semester.by_ta.comments[ALICE]
    assert [line.split(" : ")[0] for line in lines if line.startswith("`")] == ["`train`"]
    assert lines[0].endswith("pénalité de retard −4).")


def test_a_regrade_keeps_the_tas_work(semester: Course_) -> None:
    """After a change of grader_tests/ graded everyone again: same grades, comments and override,
    and no graded answer back in formgrader's queue?"""
    assert semester.regraded.grades == semester.overridden.grades
    assert semester.regraded.comments == semester.overridden.comments
    with Gradebook(semester.course.db_url, semester.course.course_id) as gb:
        assert not gb.find_grade("answer_examples", "td_cnn", "td_cnn", PAUL).needs_manual_grade
        assert gb.find_grade("test_learning_curve", "td_cnn", "td_cnn", PAUL).manual_score == 1.0


def test_a_changed_answer_is_flagged_not_kept_nor_dropped(semester: Course_) -> None:
    """Paul's new Bricolage answer: back in the TA's queue with its old grade kept for formgrader's
    'mark graded', his grade empty again, the unchanged answers still graded, and `tdkit status`
    names it?"""
    stage = semester.changed
    assert stage.grades[PAUL] == "" and stage.exported.waiting == {
        ELISE: ["answer_accuracy", "answer_bricolage", "answer_examples"],
        PAUL: ["answer_bricolage"],
    }
    with Gradebook(semester.course.db_url, semester.course.course_id) as gb:
        bricolage = gb.find_grade("answer_bricolage", "td_cnn", "td_cnn", PAUL)
        assert bricolage.needs_manual_grade and bricolage.manual_score == 0.0
        assert not gb.find_grade("answer_examples", "td_cnn", "td_cnn", PAUL).needs_manual_grade
    page = render_student(StudentResult.from_json(PAUL, stage.results[PAUL]), "td_cnn", td_cnn())
    assert "réponse modifiée depuis sa correction" in page


def test_status_lists_the_queue(semester: Course_, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does `tdkit status` say, per answer, how many are graded and whose copy waits?"""
    monkeypatch.chdir(semester.course.root)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.output
    assert (
        f"answer_bricolage: 1 graded, 2 to grade: {ELISE}, {PAUL} (answer changed since graded)"
        in result.output
    )
    assert f"answer_examples: 2 graded, 1 to grade: {ELISE}" in result.output
    assert f"waiting: {ELISE}, {PAUL}" in result.output


def test_a_grading_that_failed_on_the_graders_side_gives_no_grade(tmp_path: Path) -> None:
    """A submission whose grading crashed on the grader's side (graded again next time): is its
    final grade left empty, never a 0 for work nobody graded?"""
    from tdkit.reports.results import AssignmentResults, CheckResult, write_grades_csv

    crashed = StudentResult(
        "101238",
        [CheckResult("train/step_called", False, 0.0, 2.0, "Correction impossible")],
        grader_failure=True,
    )
    assert crashed.waiting_for == ["tdkit grade"]
    write_grades_csv(AssignmentResults("td_cnn", {"101238": crashed}), tmp_path / "grades.csv")
    row = next(csv.DictReader(io.StringIO((tmp_path / "grades.csv").read_text(encoding="utf-8"))))
    assert row["final_score"] == "" and row["auto_score"] == "0"
