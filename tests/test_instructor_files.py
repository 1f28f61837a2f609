"""The instructor's own files: each mistake gets one message naming it, never a traceback, never a
silent change of a grade.

One table of bad inputs, one row per class of mistake and file, each run through the command that
reads the file (grade, report, export moodle, collect, release, check) on a copy of a graded-looking
course: the message is asserted, and every file of the course (results.json, gradebook.db, the
reports, submitted/) is byte for byte what it was. Nothing here runs a notebook: every mistake is
found before the first submission would be graded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from tdkit.cli import main
from tdkit.core import gradebook_file
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.core.student_ids import could_mean, moodle_number
from tdkit.intake.collect import collect
from tdkit.intake.late import deadlines_from_config
from tdkit.reports.results import AssignmentResults, StudentResult, write_results_json
from tdkit.trusted.grade import _previous_results
from tdkit.trusted.gradebook import record_grades
from tdkit.trusted.preflight import preflight

FILES = Path(__file__).parent / "files"
ARCHIVE = FILES / "collect" / "moodle_export.zip"
WORKSHEET = FILES / "collect" / "worksheet_fr.csv"  # pairs: 101234+101240, 101238+101241
SETTINGS = """
c.Exchange.timezone = "Europe/Paris"
c.TdkitDeadlines.duedate = "2024-12-03 12:00"
c.TdkitDeadlines.extensions = {"101235": "2024-12-05 12:00"}
"""
SUBMITTED = ("101234", "101235", "101238")


@pytest.fixture(scope="module")
def graded(released_course: Course, tmp_path_factory: pytest.TempPathFactory) -> Course:
    """Released, collected with the French worksheet (two pairs), and given results as grading
    would leave them (results.json, reports, grades in the gradebook), without running a notebook."""
    course = Course(shutil.copytree(released_course.root, tmp_path_factory.mktemp("files") / "c"))
    with open(course.root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(SETTINGS)
    collect(course, ARCHIVE, worksheet=WORKSHEET)
    template = json.loads((FILES / "results" / "results.json").read_text(encoding="utf-8"))
    record = next(iter(template["students"].values()))
    results = AssignmentResults(
        "td_cnn",
        {sid: StudentResult.from_json(sid, record) for sid in (*SUBMITTED, "101240", "101241")},
    )
    deadlines = deadlines_from_config(course.nbgrader_config(), course.assignment)
    for sid in SUBMITTED:
        record_grades(course, sid, results.students[sid].checks, None, None, deadlines)
    write_results_json(results, course.reports / "results.json")
    (course.reports / "html").mkdir()
    (course.reports / "html" / "index.html").write_text("<p>summary</p>", encoding="utf-8")
    return course


@pytest.fixture
def course(graded: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Course:
    """A fresh copy of the graded course, the working directory."""
    root = shutil.copytree(graded.root, tmp_path / "course")
    monkeypatch.chdir(root)
    monkeypatch.setattr(gradebook_file, "LOCK_WAIT_S", 0.05)  # a held lock is found at once
    return Course(root)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def append_config(text: str) -> Callable[[Course], None]:
    def mistake(course: Course) -> None:
        with open(course.root / "nbgrader_config.py", "a", encoding="utf-8") as config:
            config.write(f"\n{text}\n")

    return mistake


def write(relative: str, data: str | bytes) -> Callable[[Course], None]:
    def mistake(course: Course) -> None:
        target = course.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return mistake


def edit_results(change: Callable[[dict[str, object]], None]) -> Callable[[Course], None]:
    def mistake(course: Course) -> None:
        path = course.reports / "results.json"
        record = json.loads(path.read_text(encoding="utf-8"))
        change(record)
        path.write_text(json.dumps(record), encoding="utf-8")

    return mistake


def reports_in_the_way(course: Course) -> None:
    """reports/ cannot be written (as root, permission bits do not stop a write: a file in the way)."""
    (course.reports / "html" / "index.html").unlink()
    (course.reports / "html").rmdir()
    (course.reports / "html").write_text("not a folder", encoding="utf-8")


WORKSHEET_ARGS = ("collect", str(ARCHIVE), "--worksheet")
LATIN1 = "torch\n# Environnement du cours, deuxième année\nnumpy\n".encode("latin-1")
FR_HEADER = WORKSHEET.read_text(encoding="utf-8").splitlines()[0]


def fr_worksheet(date: str) -> Callable[[Course], None]:
    return write(
        "bad.csv",
        f'{FR_HEADER}\n"Participant 101234","Alice Martin",1,a@b.fr,Remis,"Binôme 1",,"20,00",Oui,"{date}",-,\n',
    )


@dataclass(frozen=True)
class Case:
    file: str
    mistake: Callable[[Course], None]
    command: tuple[str, ...]
    message: tuple[str, ...]  # what the message must say, in order


CASES = {
    # nbgrader_config.py: traitlets' TraitError, SyntaxError; silent settings
    "config-wrong-type": Case(
        "nbgrader_config.py",
        append_config('c.TdkitLimits.memory_mb = "6G"'),
        ("grade",),
        ("c.TdkitLimits.memory_mb = '6G' is not valid", "a whole number without quotes"),
    ),
    "config-penalty-text": Case(
        "nbgrader_config.py",
        append_config(
            'c.AssignLatePenalties.plugin_class = "tdkit.intake.late.LatePenalty"\n'
            'c.LatePenalty.points_per_day = "2,5"'
        ),
        ("grade",),
        ("c.LatePenalty.points_per_day = '2,5' is not valid", "with a dot for decimals"),
    ),
    "config-syntax": Case(
        "nbgrader_config.py",
        append_config("c.TdkitLimits.memory_mb = "),
        ("collect", str(ARCHIVE)),
        ("nbgrader_config.py, line", "invalid syntax", "Fix that line"),
    ),
    "config-type-at-release": Case(
        "nbgrader_config.py",
        append_config('c.GenerateAssignment.create_assignment = "yes"'),
        ("release", "--no-verify"),
        ("c.GenerateAssignment.create_assignment = 'yes' is not valid: write a boolean",),
    ),
    "due-date-without-time": Case(
        "nbgrader_config.py",
        append_config('c.TdkitDeadlines.duedate = "2024-12-03"'),
        ("grade",),
        ("duedate = '2024-12-03' has no time", "'2024-12-03 23:59' for the end of that day"),
    ),
    "negative-penalty": Case(
        "nbgrader_config.py",
        append_config(
            'c.AssignLatePenalties.plugin_class = "tdkit.intake.late.LatePenalty"\n'
            "c.LatePenalty.points_per_day = -2.0"
        ),
        ("grade",),
        ("c.LatePenalty.points_per_day = -2.0 is negative",),
    ),
    "penalty-without-plugin": Case(
        "nbgrader_config.py",
        append_config(
            'c.AssignLatePenalties.plugin_class = "nbgrader.plugins.LateSubmissionPlugin"'
        ),
        ("grade",),
        ("c.LatePenalty is set but c.AssignLatePenalties.plugin_class is LateSubmissionPlugin",),
    ),
    "extension-int-key": Case(
        "nbgrader_config.py",
        append_config('c.TdkitDeadlines.extensions = {101235: "2024-12-05 12:00"}'),
        ("grade",),
        ("extensions[101235]: the key 101235 is not a text", "{'101235': "),
    ),
    "extension-typo": Case(
        "nbgrader_config.py",
        append_config('c.TdkitDeadlines.extensions = {"101253": "2024-12-05 12:00"}'),
        ("grade",),
        ("extensions['101253']: no student 101253", "did you mean", "101235"),
    ),
    "extension-partner": Case(
        "nbgrader_config.py",
        append_config('c.TdkitDeadlines.extensions = {"101240": "2024-12-05 12:00"}'),
        ("grade",),
        ("101240 hands in with group 'Binôme 1'", "Key the extension by '101234'"),
    ),
    # td-requirements.txt
    "requirements-latin1-grade": Case(
        "td-requirements.txt",
        write("td-requirements.txt", LATIN1),
        ("grade",),
        ("td-requirements.txt:2: not UTF-8 text (byte 0xe8", "save it again as UTF-8"),
    ),
    "requirements-latin1-release": Case(
        "td-requirements.txt",
        write("td-requirements.txt", LATIN1),
        ("release", "--no-verify"),
        ("td-requirements.txt:2: not UTF-8 text",),
    ),
    "requirements-latin1-check": Case(
        "td-requirements.txt",
        write("td-requirements.txt", LATIN1),
        ("check", "release/td_cnn/td_cnn.ipynb"),
        ("td-requirements.txt:2: not UTF-8 text",),
    ),
    # the worksheet and groups.csv given to collect
    "worksheet-header-only": Case(
        "worksheet",
        write("bad.csv", FR_HEADER + "\n"),
        (*WORKSHEET_ARGS, "bad.csv"),
        ("bad.csv has its header and no student row", "download the grading worksheet again"),
    ),
    "worksheet-31-february": Case(
        "worksheet",
        fr_worksheet("lundi 31 février 2025, 14:05"),
        (*WORKSHEET_ARGS, "bad.csv"),
        ("line 2: 'lundi 31 février 2025, 14:05' is not a date of the calendar",),
    ),
    "worksheet-24-30": Case(
        "worksheet",
        fr_worksheet("mardi 3 décembre 2024, 24:30"),
        (*WORKSHEET_ARGS, "bad.csv"),
        ("'mardi 3 décembre 2024, 24:30' is not a date of the calendar",),
    ),
    "groups-unknown-id": Case(
        "groups.csv",
        write("groups.csv", "group,student_id\nB,101235\nB,101253\n"),
        (*WORKSHEET_ARGS, str(WORKSHEET), "--groups", "groups.csv"),
        ("student '101253' (group 'B') is not in the grading worksheet", "did you mean", "101235"),
    ),
    # timestamp.txt
    "timestamp-not-a-date": Case(
        "timestamp.txt",
        write("submitted/101238/td_cnn/timestamp.txt", "hier soir"),
        ("grade",),
        ("timestamp.txt: 'hier soir' is not a date", "delete the file to count"),
    ),
    # roster.json
    "roster-empty-object": Case(
        "roster.json",
        write("moodle/td_cnn/roster.json", "{}"),
        ("grade",),
        ("roster.json is damaged: at the top level, 'participants' is a required property",),
    ),
    "roster-list": Case(
        "roster.json",
        write("moodle/td_cnn/roster.json", "[]"),
        ("export", "moodle"),
        ("roster.json is damaged: at the top level, [] is not of type 'object'", "tdkit collect"),
    ),
    # results.json
    "results-students-list-grade": Case(
        "results.json",
        edit_results(lambda r: r.update(students=[])),
        ("grade",),
        ("results.json is damaged: at students, [] is not of type 'object'", "tdkit grade --all"),
    ),
    "results-not-json-report": Case(
        "results.json",
        write("reports/td_cnn/results.json", '{"assignment": "td_cnn", "students": {'),
        ("report",),
        ("results.json is damaged: not JSON", "tdkit grade --all"),
    ),
    "results-no-checks-export": Case(
        "results.json",
        edit_results(lambda r: r["students"]["101234"].pop("checks")),  # type: ignore[index]
        ("export", "moodle"),
        ("at students/101234, 'checks' is a required property",),
    ),
    # gradebook.db
    "gradebook-emptied": Case(
        "gradebook.db",
        write("gradebook.db", b""),
        ("grade",),
        ("gradebook.db is empty (0 bytes)", "loses the TAs' hand grading", "tdkit grade --all"),
    ),
    "gradebook-damaged": Case(
        "gradebook.db",
        write("gradebook.db", b"not a database at all, " * 100),
        ("grade",),
        ("gradebook.db is damaged (not an SQLite database)", "restore gradebook.db"),
    ),
    "gradebook-no-tables": Case(
        "gradebook.db",
        lambda course: (
            (course.root / "gradebook.db").unlink()
            or sqlite3.connect(course.root / "gradebook.db").execute("VACUUM").connection.close()
        ),
        ("grade",),
        ("gradebook.db holds no nbgrader table",),
    ),
    # reports/
    "reports-unwritable": Case(
        "reports/",
        reports_in_the_way,
        ("grade",),
        ("Cannot write in", "then run 'tdkit grade' again. Nothing was changed."),
    ),
    "reports-unwritable-report": Case(
        "reports/",
        reports_in_the_way,
        ("report",),
        ("Cannot write in", "tdkit report"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mistake_is_one_message_and_grades_stay(course: Course, name: str) -> None:
    """Does each mistake stop its command with one message naming the file and the fix (exit 2,
    no traceback), before anything of the course (grades, gradebook, reports) changes?"""
    case = CASES[name]
    case.mistake(course)
    before = snapshot(course.root)
    result = CliRunner().invoke(main, list(case.command))
    assert result.exit_code == 2, (name, result.output, result.exception)
    assert "Traceback" not in result.output and result.output.startswith("tdkit: ")
    assert result.output.count("\n") == 1, result.output  # one message, one line
    position = 0
    for part in case.message:
        found = result.output.find(part, position)
        assert found >= 0, f"{part!r} not in {result.output!r}"
        position = found + len(part)
    assert snapshot(course.root) == before


@pytest.fixture
def held_lock(course: Course) -> Iterator[None]:
    """Another program writing the gradebook: an exclusive lock held for the test."""
    db = sqlite3.connect(course.root / "gradebook.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    yield
    db.execute("ROLLBACK")
    db.close()


@pytest.mark.parametrize(
    "command",
    [("grade",), ("release", "--no-verify"), (*WORKSHEET_ARGS, str(WORKSHEET))],
    ids=["grade", "release", "collect"],
)
def test_a_locked_gradebook_stops_before_any_work(
    course: Course, held_lock: None, command: tuple[str, ...]
) -> None:
    """Is a gradebook locked by another program named, and nothing written, before grading,
    releasing or collecting starts?"""
    before = snapshot(course.root)
    result = CliRunner().invoke(main, list(command))
    assert result.exit_code == 2, result.output
    assert "gradebook.db is locked by another program" in result.output
    assert "Traceback" not in result.output
    assert snapshot(course.root) == before


def test_moodle_participant_ids_are_read_and_said(course: Course) -> None:
    """Are « Participant NNNN » ids (the worksheet's spelling) read as NNNN, in an extension and
    in groups.csv, and is each one said, with the pair formed and the extension applied?"""
    append_config('c.TdkitDeadlines.extensions = {"Participant 101235": "2024-12-06 12:00"}')(
        course
    )
    deadlines = deadlines_from_config(course.nbgrader_config(), course.assignment)
    notes = preflight(course, list(SUBMITTED), deadlines)
    note = "c.TdkitDeadlines.extensions: 'Participant 101235' read as student 101235"
    assert notes == [f"nbgrader_config.py: {note} (Moodle's identifier)"]
    late = deadlines_from_config(course.nbgrader_config())
    assert late.assess("101235", "2024-12-06 11:00:00.000000 Europe/Paris", 21.0).penalty == 0
    groups = course.root / "groups.csv"
    groups.write_text(
        "group,student_id\nP,Participant 101235\nP,Participant 101238\n", encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["collect", str(ARCHIVE), "--groups", str(groups)])
    assert result.exit_code == 0, result.output
    assert "groups.csv, line 2: 'Participant 101235' read as student 101235" in result.output
    roster = json.loads((course.root / "moodle/td_cnn/roster.json").read_text(encoding="utf-8"))
    assert {"name": "P", "members": ["101235", "101238"], "graded": None} in roster["groups"]


def test_damaged_results_are_rebuilt_only_with_all(course: Course) -> None:
    """With a damaged results.json, does plain grading stop (naming --all), while --all grades
    everyone again and says why?"""
    edit_results(lambda r: r.update(students=[]))(course)
    path = course.reports / "results.json"
    with pytest.raises(TdkitError, match=r"grade --all"):
        _previous_results(path, print, everyone=False)
    said: list[str] = []
    assert _previous_results(path, said.append, everyone=True) is None
    damage = "at students, [] is not of type 'object'"
    assert said == [f"{path} is damaged ({damage}): every submission is graded again"]


def test_ids_it_could_have_meant() -> None:
    """Does an unknown id get the closest known ids, and Moodle's identifier its number?"""
    assert could_mean("101253", {"101235", "201999", "9"}) == "did you mean 101235?"
    assert moodle_number("Participant 0101235 ") == "101235" and moodle_number("101235") is None
    assert could_mean("x", set()).startswith("no student is known yet")


def test_unseen_group_member_is_said_without_a_worksheet(course: Course) -> None:
    """Without a worksheet, is a groups.csv member with no notebook anywhere named (a typo would
    otherwise leave the pair unformed in silence)?"""
    groups = course.root / "groups.csv"
    groups.write_text("group,student_id\nQ,101238\nQ,101283\n", encoding="utf-8")
    report = collect(course, ARCHIVE, groups=groups)
    assert any(
        line.startswith("groups.csv: student 101283 (group 'Q') has no notebook")
        for line in report.lines()
    )


def test_repository_config_passes_the_checks() -> None:
    """Does the course's own nbgrader_config.py pass every check (a deadline with a time for each
    assignment, a positive penalty, the plugin that reads it)?"""
    for assignment in ("td_cnn", "td_mlp"):
        deadlines = deadlines_from_config(Course(REPO, assignment).nbgrader_config(), assignment)
        assert deadlines.due is not None and deadlines.notes == ()
