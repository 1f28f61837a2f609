"""tdkit collect: an LMS export zip into nbgrader's submitted/<id>/td_cnn/td_cnn.ipynb."""

from __future__ import annotations

import json
import re
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tdkit.cli import main
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.intake.collect import CollectReport, Outcome, Status, collect

FIXTURE = Path(__file__).parent / "files" / "collect" / "moodle_export.zip"


def notebook(text: str) -> bytes:
    cell = {"cell_type": "markdown", "id": "a", "metadata": {}, "source": [text]}
    return json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes | str]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return path


def with_raw_names(path: Path, names: dict[str, bytes]) -> Path:
    """Rewrite ASCII placeholder names as raw bytes, UTF-8 flag left unset: what old Windows and
    macOS zip tools write, and what ZipFile.writestr cannot produce."""
    data = path.read_bytes()
    for placeholder, raw in names.items():
        assert len(placeholder.encode()) == len(raw) and data.count(placeholder.encode()) == 2
        data = data.replace(placeholder.encode(), raw)
    path.write_bytes(data)
    return path


@pytest.fixture
def course(tmp_path: Path) -> Course:
    root = tmp_path / "course"
    root.mkdir()
    (root / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n")
    (root / "source" / "td_cnn").mkdir(parents=True)  # the assignment, as nbgrader lays it out
    (root / "source" / "td_cnn" / "td_cnn.md").write_text("# TD\n", encoding="utf-8")
    return Course(root)


def outcomes(report: CollectReport) -> dict[str, Outcome]:
    return {o.student: o for o in report.outcomes}


def submitted(course: Course, student_id: str) -> Path:
    return course.submitted / student_id / "td_cnn" / "td_cnn.ipynb"


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_moodle_folders(course: Course, tmp_path: Path) -> None:
    """Does each Moodle folder 'Full Name_<id>_assignsubmission_file_/' land, byte for byte, in
    submitted/<id>/td_cnn/td_cnn.ipynb, with macOS and Jupyter leftovers ignored?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("Alice Martin_101_assignsubmission_file_/td_cnn.ipynb", notebook("alice")),
            (
                "Alice Martin_101_assignsubmission_file_/.ipynb_checkpoints/td_cnn-checkpoint.ipynb",
                b"{}",
            ),
            (
                "__MACOSX/Alice Martin_101_assignsubmission_file_/._td_cnn.ipynb",
                b"\x00\x05\x16\x07",
            ),
            ("Jean_Pierre 2_102_assignsubmission_file_/td_cnn.ipynb", notebook("jean-pierre")),
        ],
    )
    report = collect(course, archive)
    assert [(o.student, o.status) for o in report.outcomes] == [
        ("101", Status.TAKEN),
        ("102", Status.TAKEN),
    ]
    assert submitted(course, "101").read_bytes() == notebook("alice")
    assert submitted(course, "102").read_bytes() == notebook("jean-pierre")
    assert files_under(course.submitted) == {"101/td_cnn/td_cnn.ipynb", "102/td_cnn/td_cnn.ipynb"}


def test_flat_files_and_plain_folders(course: Course, tmp_path: Path) -> None:
    """Are flat files ('12345_td_cnn.ipynb', Moodle's flat names, '<id>_td_cnn.ipynb') and plain
    '<id>/td_cnn.ipynb' folders collected, and a bare 'td_cnn.ipynb' refused rather than guessed?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("12345_td_cnn.ipynb", notebook("a")),
            ("Bob Durand_12346_assignsubmission_file_td_cnn.ipynb", notebook("b")),
            ("jdupont_td_cnn.ipynb", notebook("c")),
            ("e-42.x/td_cnn.ipynb", notebook("d")),
            ("td_cnn.ipynb", notebook("whose?")),
        ],
    )
    report = outcomes(collect(course, archive))
    taken = {sid for sid, o in report.items() if o.status is Status.TAKEN}
    assert taken == {"12345", "12346", "jdupont", "e-42.x"}
    assert report["'td_cnn.ipynb'"].status is Status.REJECTED
    assert "cannot tell which student" in report["'td_cnn.ipynb'"].reason
    assert submitted(course, "12346").read_bytes() == notebook("b")
    assert all(not o.renamed_from for o in report.values())


def test_renamed_notebook(course: Course, tmp_path: Path) -> None:
    """Is a notebook named 'TD CNN (1).ipynb' stored as td_cnn.ipynb, and does the report say so?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("Alice_101_assignsubmission_file_/TD CNN (1).ipynb", notebook("a")),
            ("Bob_102_assignsubmission_file_TD_CNN.IPYNB", notebook("b")),
        ],
    )
    report = collect(course, archive)
    assert [o.renamed_from for o in report.renamed] == ["TD CNN (1).ipynb", "TD_CNN.IPYNB"]
    assert submitted(course, "101").read_bytes() == notebook("a")
    assert "renamed 'TD CNN (1).ipynb' -> td_cnn.ipynb" in report.lines()[0]
    assert "(2 renamed)" in report.summary()


def test_no_notebook(course: Course, tmp_path: Path) -> None:
    """Is a student with no .ipynb (a script, or an empty folder) rejected with what was found?"""
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Alice_101_assignsubmission_file_/td_cnn.py", "print(1)\n")
        zf.mkdir("Bob_102_assignsubmission_file_")
    report = outcomes(collect(course, archive))
    assert report["101"].status is Status.REJECTED
    assert "no .ipynb notebook" in report["101"].reason and "td_cnn.py" in report["101"].reason
    assert report["102"].status is Status.REJECTED and "empty submission" in report["102"].reason
    assert not course.submitted.exists()


def test_two_notebooks(course: Course, tmp_path: Path) -> None:
    """Are two notebooks from one student rejected with both names, without picking one?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("Alice_101_assignsubmission_file_/td_cnn.ipynb", notebook("1")),
            ("Alice_101_assignsubmission_file_/v2/td_cnn_final.ipynb", notebook("2")),
        ],
    )
    (outcome,) = collect(course, archive).outcomes
    assert outcome.status is Status.REJECTED and outcome.reason.startswith("2 notebooks")
    assert "/td_cnn.ipynb'" in outcome.reason and "v2/td_cnn_final.ipynb" in outcome.reason
    assert not submitted(course, "101").exists()


def test_zip_slip(course: Course, tmp_path: Path) -> None:
    """Are '..' entries (top level, inside a student folder, with backslashes) rejected, and is
    nothing written outside submitted/?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("../evil.ipynb", notebook("x")),
            ("..\\..\\evil.ipynb", notebook("x")),
            ("Eve_666_assignsubmission_file_/../../evil.ipynb", notebook("x")),
            ("Eve_666_assignsubmission_file_/td_cnn.ipynb", notebook("eve")),
            ("Alice_101_assignsubmission_file_/td_cnn.ipynb", notebook("alice")),
        ],
    )
    before = files_under(tmp_path)
    report = outcomes(collect(course, archive))
    assert report["666"].status is Status.REJECTED and "'..' in path" in report["666"].reason
    assert report["'../evil.ipynb'"].status is Status.REJECTED
    assert report["'..\\\\..\\\\evil.ipynb'"].status is Status.REJECTED
    assert report["101"].status is Status.TAKEN
    assert files_under(tmp_path) - before == {"course/submitted/101/td_cnn/td_cnn.ipynb"}


def test_absolute_paths(course: Course, tmp_path: Path) -> None:
    """Are absolute entries ('/tmp/...', 'C:/...') rejected rather than attributed to anyone?"""
    target = tmp_path / "evil.ipynb"
    archive = make_zip(
        tmp_path / "export.zip",
        [(str(target), notebook("x")), ("C:/101/td_cnn.ipynb", notebook("x"))],
    )
    report = collect(course, archive)
    assert [o.status for o in report.outcomes] == [Status.REJECTED, Status.REJECTED]
    assert all("absolute path" in o.reason for o in report.outcomes)
    assert not target.exists() and not course.submitted.exists()


def test_symlink_entry(course: Course, tmp_path: Path) -> None:
    """Is a symbolic link stored in the zip (mode bits in external_attr) rejected, not followed?"""
    link = zipfile.ZipInfo("Eve_666_assignsubmission_file_/td_cnn.ipynb")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "export.zip", [(link, "/etc/passwd")])
    (outcome,) = collect(course, archive).outcomes
    assert outcome.status is Status.REJECTED and "symbolic link" in outcome.reason
    assert not course.submitted.exists()


def test_duplicate_ids(course: Course, tmp_path: Path) -> None:
    """Are two submissions with one student id both rejected, while one Moodle student with two
    plugin folders (file + online text) is not a duplicate?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("Alice_101_assignsubmission_file_/td_cnn.ipynb", notebook("alice")),
            ("Bob_101_assignsubmission_file_/td_cnn.ipynb", notebook("bob")),
            ("202/td_cnn.ipynb", notebook("c")),
            ("202_td_cnn.ipynb", notebook("d")),
            ("Carl_303_assignsubmission_file_/td_cnn.ipynb", notebook("carl")),
            ("Carl_303_assignsubmission_onlinetext_/onlinetext.html", "<p>hi</p>"),
        ],
    )
    report = outcomes(collect(course, archive))
    assert report["101"].status is Status.REJECTED
    assert "'Alice_101_assignsubmission_file_/'" in report["101"].reason
    assert "'Bob_101_assignsubmission_file_/'" in report["101"].reason
    assert report["202"].status is Status.REJECTED and "2 submissions" in report["202"].reason
    assert report["303"].status is Status.TAKEN
    assert report["303"].ignored == ("Carl_303_assignsubmission_onlinetext_/onlinetext.html",)
    assert files_under(course.submitted) == {"303/td_cnn/td_cnn.ipynb"}


def test_mixed_encoding_names(course: Course, tmp_path: Path) -> None:
    """Without the UTF-8 flag, are UTF-8 names read as UTF-8 and cp437 names kept as cp437, and is
    a non-ASCII plain folder refused as a student id instead of crashing?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("~~lise_101_assignsubmission_file_/td_cnn.ipynb", notebook("elise")),  # UTF-8 bytes
            ("H^l`ne_102_assignsubmission_file_/td_cnn.ipynb", notebook("helene")),  # cp437 bytes
            ("Zoé_103_assignsubmission_file_/td_cnn.ipynb", notebook("zoe")),  # UTF-8 flag set
            ("J^r!me/td_cnn.ipynb", notebook("jerome")),
        ],
    )
    with_raw_names(
        archive,
        {
            "~~lise_101": "Élise_101".encode(),
            "H^l`ne_102": b"H\x82l\x8ane_102",
            "J^r!me": b"J\x82r\x93me",
        },
    )
    report = outcomes(collect(course, archive))
    assert report["101"].entry == "Élise_101_assignsubmission_file_/td_cnn.ipynb"
    assert report["102"].entry == "Hélène_102_assignsubmission_file_/td_cnn.ipynb"
    assert report["103"].entry == "Zoé_103_assignsubmission_file_/td_cnn.ipynb"
    assert report["'Jérôme/'"].status is Status.REJECTED
    assert "not a safe student id" in report["'Jérôme/'"].reason
    assert submitted(course, "102").read_bytes() == notebook("helene")


def test_zip_bomb(course: Course, tmp_path: Path) -> None:
    """Is a highly compressible notebook above the per-notebook limit refused, and are notebooks
    refused once the per-archive total is spent?"""
    bomb = b"{" + b" " * 100_000 + b"}"
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("101_td_cnn.ipynb", bomb),
            ("102_td_cnn.ipynb", b"x" * 600),
            ("103_td_cnn.ipynb", b"y" * 600),
        ],
    )
    assert archive.stat().st_size < 2_000
    report = outcomes(collect(course, archive, max_notebook_bytes=1_000, max_total_bytes=1_000))
    assert (
        report["101"].status is Status.REJECTED
        and "per-notebook limit (1000 bytes)" in report["101"].reason
    )
    assert report["102"].status is Status.TAKEN
    assert report["103"].status is Status.REJECTED and "per-archive limit" in report["103"].reason
    assert files_under(course.submitted) == {"102/td_cnn/td_cnn.ipynb"}


def test_corrupt_zip(course: Course, tmp_path: Path) -> None:
    """Does an unreadable archive (not a zip, truncated, missing) raise TdkitError naming the file,
    and does one damaged member only reject its own student?"""
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    whole = make_zip(tmp_path / "whole.zip", [("101_td_cnn.ipynb", notebook("a"))])
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[:-30])
    for bad in (junk, truncated, tmp_path / "missing.zip"):
        with pytest.raises(TdkitError, match=bad.name):
            collect(course, bad)

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as zf:  # stored: the flipped byte is the content itself
        zf.writestr("101_td_cnn.ipynb", b"AAAA-first-notebook")
        zf.writestr("102_td_cnn.ipynb", b"BBBB-other-notebook")
    damaged.write_bytes(damaged.read_bytes().replace(b"AAAA", b"AAAB"))
    report = outcomes(collect(course, damaged))
    assert report["101"].status is Status.REJECTED and "cannot be read" in report["101"].reason
    assert report["102"].status is Status.TAKEN


def test_force_unchanged_differs(course: Course, tmp_path: Path) -> None:
    """Is an identical resubmission 'unchanged', a different one skipped (old file kept) unless
    --force, which replaces it?"""
    first = make_zip(tmp_path / "first.zip", [("101_td_cnn.ipynb", notebook("v1"))])
    second = make_zip(tmp_path / "second.zip", [("101_td_cnn.ipynb", notebook("v2"))])
    assert collect(course, first).outcomes[0].status is Status.TAKEN
    assert collect(course, first).outcomes[0].status is Status.UNCHANGED

    (skipped,) = collect(course, second).outcomes
    assert (
        skipped.status is Status.SKIPPED
        and skipped.reason == "already collected, differs; use --force"
    )
    assert submitted(course, "101").read_bytes() == notebook("v1")

    (replaced,) = collect(course, second, force=True).outcomes
    assert replaced.status is Status.REPLACED
    assert submitted(course, "101").read_bytes() == notebook("v2")
    assert files_under(course.submitted) == {"101/td_cnn/td_cnn.ipynb"}  # no temporary file left


def test_cli_on_moodle_export(
    course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Does 'tdkit collect' print one line per student and a summary, exit 0 with rejections,
    and exit 2 with the archive's name when the zip is unreadable?"""
    monkeypatch.chdir(course.root)
    runner = CliRunner()
    result = runner.invoke(main, ["collect", str(FIXTURE)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "101234",
        "101235",
        "101236",
        "101237",
        "101238",
    ]
    assert lines[0] == "101234: taken 'Alice Martin_101234_assignsubmission_file_/td_cnn.ipynb'"
    assert "renamed 'TD CNN (1).ipynb' -> td_cnn.ipynb" in lines[1]
    assert lines[2].startswith("101236: rejected: 2 notebooks")
    assert lines[3].startswith("101237: rejected: no .ipynb notebook")
    assert lines[-1].startswith(
        "moodle_export.zip: 3 taken (1 renamed), 0 replaced, 0 unchanged, 0 skipped, 2 rejected;"
    )

    again = runner.invoke(main, ["collect", str(FIXTURE), "--force"])
    assert again.exit_code == 0 and "0 taken (0 renamed), 0 replaced, 3 unchanged" in again.output

    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"not a zip")
    failed = runner.invoke(main, ["collect", str(bad)])
    assert failed.exit_code == 2 and "broken.zip" in failed.output


WORKSHEET_EN = FIXTURE.with_name("worksheet_en.csv")
WORKSHEET_FR = FIXTURE.with_name("worksheet_fr.csv")


def paris(course: Course) -> Course:
    """The course in Paris time, the zone of the fixtures' worksheet dates."""
    (course.root / "nbgrader_config.py").write_text(
        'c = get_config()  # noqa: F821\nc.Exchange.timezone = "Europe/Paris"\n'
    )
    return course


def test_collect_with_worksheet(course: Course) -> None:
    """With Moodle's grading worksheet, does each collected notebook get its submission date in
    timestamp.txt (course time zone, read back by nbgrader as the right UTC time), each student
    their name and e-mail in the gradebook, and is the student with no submission listed as missing?"""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    report = collect(paris(course), FIXTURE, worksheet=WORKSHEET_EN)
    by_id = outcomes(report)
    stamp = (submitted(course, "101234").parent / "timestamp.txt").read_text(encoding="utf-8")
    assert stamp == "2024-12-03 14:05:00.000000 Europe/Paris"
    assert str(parse_utc(stamp)) == "2024-12-03 13:05:00"
    assert (
        by_id["101234"].timestamp == stamp
        and "submitted 2024-12-03 14:05" in by_id["101234"].describe()
    )
    midnight = (submitted(course, "101238").parent / "timestamp.txt").read_text(encoding="utf-8")
    assert midnight.startswith("2024-12-03 00:00:00")  # 12:00 AM
    assert (
        by_id["101239"].status is Status.MISSING
        and "no submission in the archive" in by_id["101239"].reason
    )
    assert not (course.submitted / "101239").exists()
    assert [o.student for o in report.missing] == ["101239"]
    assert report.summary().endswith("; 1 missing")
    with Gradebook(course.db_url, course.course_id) as gb:
        elise = gb.find_student("101235")
        assert (elise.first_name, elise.last_name, elise.email) == (
            "Élise",
            "Durand",
            "elise.durand@etu.example.fr",
        )
        assert gb.find_student("101239").last_name == "Roux"
    saved = course.root / "moodle" / "td_cnn"
    assert (saved / "worksheet_en.csv").read_bytes() == WORKSHEET_EN.read_bytes()
    assert (
        json.loads((saved / "roster.json").read_text(encoding="utf-8"))["participants"]["101239"][
            "submitted_at"
        ]
        is None
    )


def test_moodle_group_submissions(course: Course) -> None:
    """With a French worksheet of group submissions (one folder per group), is a partner without a
    folder covered by the group rather than missing, and a student of the default group alone?"""
    report = collect(paris(course), FIXTURE, worksheet=WORKSHEET_FR)
    groups = {g.name: g for g in report.roster.groups}
    assert (
        groups["Binôme 1"].members == ("101234", "101240") and groups["Binôme 1"].graded == "101234"
    )
    assert (
        groups["Binôme 2"].members == ("101238", "101241") and groups["Binôme 2"].graded == "101238"
    )
    assert report.missing == [] and not report.roster.conflicts
    assert report.roster.group_of("101235") is None
    stamp = (submitted(course, "101235").parent / "timestamp.txt").read_text(encoding="utf-8")
    assert stamp == "2024-12-05 09:30:00.000000 Europe/Paris"


def test_pairs_from_groups_csv(course: Course, tmp_path: Path) -> None:
    """With a groups.csv, is a pair's identical notebook written and graded once, are two different
    notebooks in one group a conflict naming both, and is a student in two groups a conflict naming
    both groups, with nothing chosen silently?"""
    archive = make_zip(
        tmp_path / "export.zip",
        [
            ("Ana_201_assignsubmission_file_/td_cnn.ipynb", notebook("pair A")),
            ("Ben_202_assignsubmission_file_/td_cnn.ipynb", notebook("pair A")),
            ("Cleo_203_assignsubmission_file_/td_cnn.ipynb", notebook("C's version")),
            ("Dan_204_assignsubmission_file_/td_cnn.ipynb", notebook("D's version")),
            ("Eve_205_assignsubmission_file_/td_cnn.ipynb", notebook("E")),
        ],
    )
    groups = tmp_path / "groups.csv"
    groups.write_text(
        "group,student_id\nA,201\nA,202\nB,203\nB,204\nC,205\nD,205\nD,206\n", encoding="utf-8"
    )
    report = collect(course, archive, groups=groups)
    by_id = outcomes(report)
    assert by_id["202"].status is Status.GROUPED and "same notebook as 201" in by_id["202"].reason
    assert not submitted(course, "202").exists() and submitted(course, "201").is_file()
    assert {sid for sid in ("203", "204", "205") if by_id[sid].status is Status.TAKEN} == {
        "203",
        "204",
        "205",
    }
    conflicts = {c.subject: c for c in report.roster.conflicts}
    assert conflicts["B"].kind == "two_notebooks"
    assert conflicts["B"].candidates == (
        "203 (Cleo_203_assignsubmission_file_/td_cnn.ipynb)",
        "204 (Dan_204_assignsubmission_file_/td_cnn.ipynb)",
    )
    assert conflicts["205"].kind == "several_groups" and conflicts["205"].candidates == (
        "C (groups.csv)",
        "D (groups.csv)",
    )
    groups_by_name = {g.name: g for g in report.roster.groups}
    assert groups_by_name["A"].graded == "201" and groups_by_name["B"].graded is None
    assert groups_by_name["D"].members == ("206",)  # 205 is taken out of both of its groups
    lines = report.lines()
    assert any(
        line.startswith("conflict: group 'B': different notebooks from 203") and "/ 204" in line
        for line in lines
    )
    assert any(
        line.startswith(
            "conflict: student 205: in several groups (C (groups.csv) / D (groups.csv))"
        )
        for line in lines
    )
    assert "1 grouped" in report.summary() and "2 group conflict(s)" in report.summary()


def test_bad_worksheets(course: Course, tmp_path: Path) -> None:
    """Does a worksheet that is not UTF-8, lacks the Identifier column or has a date Moodle could
    not have written stop collect with a message naming the fix, before anything is written?"""
    cases = {
        "latin1.csv": (
            'Identifier,Grade\n"Participant 1",é\n'.encode("latin-1"),
            "save it again as 'CSV UTF-8'",
        ),
        "noid.csv": (b"Name,Grade\nx,1\n", "no 'Identifier' column"),
        "date.csv": (
            b'Identifier,"Last modified (submission)"\n"Participant 101234","3/12/2024 14:05"\n',
            "not a date as Moodle writes it",
        ),
    }
    for name, (data, fix) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(data)
        with pytest.raises(TdkitError, match=re.escape(fix)):
            collect(course, FIXTURE, worksheet=bad)
    assert not course.submitted.exists()


def test_cli_collect_with_worksheet(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does 'tdkit collect --worksheet' print the missing student and the submission dates?"""
    monkeypatch.chdir(paris(course).root)
    result = CliRunner().invoke(main, ["collect", str(FIXTURE), "--worksheet", str(WORKSHEET_EN)])
    assert result.exit_code == 0, result.output
    assert (
        "101239: missing: in the grading worksheet, no submission in the archive" in result.output
    )
    assert "; submitted 2024-12-03 14:05:00.000000 Europe/Paris" in result.output
