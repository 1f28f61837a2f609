"""The Moodle round trip: submissions zip and grading worksheet in, graded, worksheet and feedback zip out."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import REPO, copy_course
from nbgrader.api import Gradebook

from tdkit.cli import main
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.intake.collect import CollectReport, Status, collect
from tdkit.intake.worksheet import read_worksheet
from tdkit.release.generate import release
from tdkit.reports.html import format_number
from tdkit.reports.moodle import MoodleExport, comments_text, export_moodle
from tdkit.reports.results import AssignmentResults
from tdkit.trusted.grade import GradeRun, grade_all

SOLUTION = REPO / "source/td_cnn/td_cnn.ipynb"
RELEASE = REPO / "release/td_cnn/td_cnn.ipynb"
WORKSHEET = Path(__file__).parent / "files" / "collect" / "worksheet_en.csv"
# Due 3 December 2024 at noon, Paris time; Élise has until the 5th at noon.
DEADLINES = """
c.TdkitDeadlines.duedate = "2024-12-03 12:00"
c.TdkitDeadlines.extensions = {"101235": "2024-12-05 12:00"}
"""


@dataclass
class RoundTrip:
    course: Course
    collected: CollectReport
    run: GradeRun
    exported: MoodleExport


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> RoundTrip:
    """Alice (solution, 2 h 05 late) and Léa hand in the same notebook as a pair; Élise (the TD as
    written) is late but has an extension; Paul (solution) is on time; Karim and Zoé hand in nothing,
    and Karim is in two groups."""
    course = Course(copy_course(tmp_path_factory.mktemp("moodle")))
    with open(course.root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(DEADLINES)
    release(course, verify=False)
    solution, as_written = SOLUTION.read_bytes(), RELEASE.read_bytes()
    archive = course.root / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Alice Martin_101234_assignsubmission_file_/td_cnn.ipynb", solution)
        zf.writestr("Élise Durand_101235_assignsubmission_file_/td_cnn.ipynb", as_written)
        zf.writestr("Léa Petit_101237_assignsubmission_file_/TD CNN.ipynb", solution)
        zf.writestr("Paul Girard_101238_assignsubmission_file_/td_cnn.ipynb", solution)
    groups = course.root / "groups.csv"
    groups.write_text(
        "group,student_id\nBinôme 1,101234\nBinôme 1,101237\nB3,101236\nB4,101236\n",
        encoding="utf-8",
    )
    collected = collect(course, archive, worksheet=WORKSHEET, groups=groups)
    run = grade_all(course, progress=lambda line: None)
    # Nobody grades the written answers here: the provisional grades carry the round trip.
    return RoundTrip(course, collected, run, export_moodle(course, run.results, provisional=True))


def test_pair_graded_once(trip: RoundTrip) -> None:
    """Is the pair's notebook graded once, and do both partners get the same result, in results.json,
    grades.csv and the gradebook?"""
    assert Status.GROUPED in {o.status for o in trip.collected.outcomes}
    assert sorted(trip.run.graded) == ["101234", "101235", "101238"]
    results = json.loads((trip.course.reports / "results.json").read_text(encoding="utf-8"))[
        "students"
    ]
    alice, lea = results["101234"], results["101237"]
    assert lea["graded_with"] == "101234" and lea["group"] == alice["group"] == "Binôme 1"
    assert (lea["score"], lea["late_penalty"], lea["final_score"]) == (
        alice["score"],
        2.0,
        alice["score"] - 2.0,
    )
    grades = (trip.course.reports / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert grades[0].endswith(
        "submitted_at,seconds_late,late_penalty,final_score,group,graded_with,"
        "automatic,by_hand,maximum,pending"
    )
    assert any(line.startswith("101237,") and ",Binôme 1,101234," in line for line in grades)
    with Gradebook(trip.course.db_url, trip.course.course_id) as gb:
        for sid in ("101234", "101237"):
            submission = gb.find_submission("td_cnn", sid)
            # nbgrader keeps the raw score and the penalty apart (`nbgrader export` subtracts it).
            assert (submission.score, submission.late_submission_penalty) == (alice["score"], 2.0)
    assert trip.course.autograded_notebook("101237").is_file()


def test_lateness_and_extension(trip: RoundTrip) -> None:
    """Do nbgrader's own due date and extension in the gradebook give the lateness tdkit reports, with
    the penalty of the configured plugin (2 points per started day), and none with an extension?"""
    results = trip.run.results.students
    assert (
        results["101234"].seconds_late == 2 * 3600 + 5 * 60
        and results["101234"].late_penalty == 2.0
    )
    assert results["101235"].seconds_late == 0 and results["101235"].late_penalty == 0
    assert results["101238"].seconds_late == 0
    with Gradebook(trip.course.db_url, trip.course.course_id) as gb:
        assert str(gb.find_assignment("td_cnn").duedate) == "2024-12-03 11:00:00"  # UTC
        assert gb.find_submission("td_cnn", "101234").total_seconds_late == 2 * 3600 + 5 * 60
        elise = gb.find_submission("td_cnn", "101235")
        assert str(elise.extension) == "2 days, 0:00:00" and elise.total_seconds_late == 0
        assert gb.find_student("101234").email == "alice.martin@etu.example.fr"


def test_worksheet_round_trip(trip: RoundTrip) -> None:
    """Worksheet in, graded, worksheet out, parsed back: same header and untouched cells, every grade
    and comment as in results.json, and the students without a submission keep their grade as it was
    (empty for Zoé)?"""
    before = read_worksheet(WORKSHEET)
    after = read_worksheet(trip.exported.worksheet)
    assert after.header == before.header and (after.bom, after.delimiter) == (True, ",")
    results = json.loads((trip.course.reports / "results.json").read_text(encoding="utf-8"))[
        "students"
    ]
    grade, feedback = before.column("grade"), before.column("feedback")
    assert grade is not None and feedback is not None
    for old, new in zip(before.rows, after.rows, strict=True):
        sid = before.participant_id(old)
        assert [c for i, c in enumerate(new) if i not in (grade, feedback)] == [
            c for i, c in enumerate(old) if i not in (grade, feedback)
        ]
        if sid not in results:
            assert (new[grade], new[feedback]) == (old[grade], old[feedback]), sid
            continue
        record = results[sid]
        assert float(new[grade]) == pytest.approx(
            record["final_score"] / record["maximum"] * 20, abs=0.005
        )
        lines = comments_text(new[feedback])
        head = "Note provisoire" if record["pending"] else "Note"
        assert lines[0].startswith(
            f"{head} : {format_number(record['final_score'])} / {format_number(record['maximum'])} "
        )
        assert any("pénalité de 2 point(s)" in line for line in lines) == (
            record["late_penalty"] == 2.0
        )
    # The release as written: one line says so, none per check.
    elise = comments_text(
        next(r for r in after.rows if after.participant_id(r) == "101235")[feedback]
    )
    assert sum("Rien n'a été modifié" in line for line in elise) == 1
    assert not any(line.startswith("`") for line in elise)
    zoe = next(r for r in after.rows if after.participant_id(r) == "101239")
    assert zoe[grade] == "" and zoe[feedback] == ""
    assert trip.exported.without_result == ["101236", "101239"]


def test_feedback_zip_matches_moodle_importer(trip: RoundTrip) -> None:
    """Is each student's page in the zip under a name Moodle's importer maps to that participant
    (explode('_', name, 5): participant number, then 'assignfeedback', 'file'), one self-contained
    HTML page each (images inlined, no link to another file)?"""
    with zipfile.ZipFile(trip.exported.feedback_zip) as zf:
        pages = {name: zf.read(name).decode("utf-8") for name in zf.namelist()}
    matched = {}
    for name, page in pages.items():
        parts = name.split("_", 4)
        assert (
            len(parts) == 5 and parts[1].isdigit() and parts[2:4] == ["assignfeedback", "file"]
        ), name
        assert not name.startswith((".", "~")) and "/" not in name
        matched[parts[1]] = (parts[0], parts[4], page)
    assert sorted(matched) == ["101234", "101235", "101237", "101238"]
    assert matched["101235"][:2] == ("Élise Durand", "retour_td_cnn.html")
    for _, _, page in matched.values():
        assert (
            re.findall(r'src="(?!data:)', page) == []
            and re.findall(r'href="(?!#|https?:)', page) == []
        )
        assert "data:image/png;base64," in page
    assert (
        "Rendu avec 2 h 5 min de retard" in matched["101237"][2]
        and "Binôme 1" in matched["101237"][2]
    )


def test_summary_counts_and_conflicts(trip: RoundTrip) -> None:
    """Does the class summary say how many submissions had no timestamp, list the late ones, and show
    the group conflict with both candidates?"""
    summary = (trip.course.reports / "html" / "index.html").read_text(encoding="utf-8")
    assert "0 copie sans date de remise" in summary
    assert "Étudiant 101236 : dans plusieurs groupes (B3 (groups.csv) / B4 (groups.csv))" in summary
    assert re.search(r"101234</a></td><td>2 h 5 min</td>", summary)


def test_cli_export(trip: RoundTrip, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does 'tdkit export moodle' name both files with the Moodle menu each one goes to?"""
    monkeypatch.chdir(trip.course.root)
    result = CliRunner().invoke(main, ["export", "moodle", "--provisional"])
    assert result.exit_code == 0, result.output
    assert "-> Upload grading worksheet" in result.output
    assert "feedback_files.zip -> Upload multiple feedback files in a zip" in result.output
    assert "no result, grade left empty: 101236, 101239" in result.output
    assert (
        "no final grade yet, provisional grade written: 101238 (waits for answer_" in result.output
    )


def test_timestamp_in_course_time_zone() -> None:
    """Are the worksheet's English and French dates read in the course's time zone, 12 AM as midnight?"""
    zone = ZoneInfo("Europe/Paris")
    fr = {
        p.participant_id: p
        for p in read_worksheet(WORKSHEET.with_name("worksheet_fr.csv")).participants(zone)
    }
    en = {p.participant_id: p for p in read_worksheet(WORKSHEET).participants(zone)}
    assert fr["101234"].submitted_at == en["101234"].submitted_at
    assert str(en["101238"].submitted_at) == "2024-12-03 00:00:00+01:00"
    assert en["101239"].submitted_at is None and fr["101241"].submitted_at is None


def test_worksheets_written_back_byte_for_byte() -> None:
    """Is a worksheet written back unchanged, byte for byte, with and without the BOM?"""
    for name in ("worksheet_en.csv", "worksheet_fr.csv"):
        path = WORKSHEET.with_name(name)
        assert read_worksheet(path).to_bytes() == path.read_bytes()


def test_export_needs_a_worksheet(tmp_path: Path) -> None:
    """Without a collected worksheet, does the export say which command brings it?"""
    course = Course(tmp_path)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n")
    with pytest.raises(TdkitError, match="--worksheet"):
        export_moodle(course, AssignmentResults("td_cnn"))


def test_student_names_reach_the_gradebook_inert() -> None:
    """Does a name or e-mail carrying markup (students edit their own in Moodle) lose every markup
    character before formgrader, which shows names unescaped, can read it?"""
    from tdkit.intake.roster import inert_email, inert_name

    assert inert_name("Zoë O'Neil-Dupré") == "Zoë O’Neil-Dupré"
    hostile = inert_name('<img src=x onerror="alert(1)">Éva <script>fetch("//x")</script>')
    assert not set(hostile) & set("<>\"'&=/()`;:")
    assert hostile.startswith("img src x onerror alert") and "Éva" in hostile
    assert inert_email("eva.martin@etu.example.fr") == "eva.martin@etu.example.fr"
    assert inert_email('a"<svg onload=alert(1)>@x.fr') is None
