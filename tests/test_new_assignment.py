"""Is a new assignment only course content? The template of ``examples/new_assignment/``, copied
under a new name into a temporary course, is released, graded and reported end to end by the
commands, with nothing of tdkit changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import REPO, copy_course

from tdkit.cli import main
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError

TEMPLATE = REPO / "examples" / "new_assignment"
NAME = "td_mini"
WRONG = "    return (x - x.mean()) / x.std()\n"  # over the whole array, not per column
MUTATES = "    x -= x.mean(axis=0)\n    x /= x.std(axis=0)\n    return x\n"


def add_assignment(root: Path, name: str) -> None:
    """The template's files under ``name``: its paths and every mention of its name renamed."""
    for path in TEMPLATE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = root / str(path.relative_to(TEMPLATE)).replace("new_assignment", name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                path.read_text(encoding="utf-8").replace("new_assignment", name), encoding="utf-8"
            )


def submit(root: Path, student: str, body: str | None) -> None:
    """The release with ``standardize``'s body replaced (None: the release as distributed)."""
    nb = nbformat.read(root / "release" / NAME / f"{NAME}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "standardize" and body:
            cell.source = "def standardize(x):\n" + body
    folder = root / "submitted" / student / NAME
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NAME}.ipynb")
    (folder / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_course(tmp_path_factory.mktemp("course"))
    add_assignment(root, NAME)
    shutil.rmtree(root / "release" / "td_cnn")  # the other assignment stays as it is: unreleased
    return root


def test_a_template_assignment_is_released_graded_and_reported(
    course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Released (its solution verified by its own hidden check), then graded in the sandbox: the
    solution gets every point, and each wrong one loses the check that names its mistake?"""
    monkeypatch.chdir(course)
    released = CliRunner().invoke(main, ["release", NAME])
    assert released.exit_code == 0, released.output
    assert "(x - x.mean(axis=0))" not in (course / "release" / NAME / f"{NAME}.ipynb").read_text()
    submit(course, "s1", "    return (x - x.mean(axis=0)) / x.std(axis=0)\n")
    submit(course, "s2", WRONG)
    submit(course, "s3", MUTATES)
    graded = CliRunner().invoke(main, ["grade", NAME])
    assert graded.exit_code == 0, graded.output
    results = json.loads((course / "reports" / NAME / "results.json").read_text())["students"]
    failed = {
        sid: sorted(c for c, check in record["checks"].items() if not check["passed"])
        for sid, record in results.items()
    }
    assert failed == {
        "s1": [],
        "s2": ["standardize/matches_reference"],
        "s3": ["standardize/leaves_input"],
    }
    assert results["s1"]["score"] == results["s1"]["max_score"] == 2.0
    wrong = results["s2"]["checks"]["standardize/matches_reference"]["message"]
    assert "x.mean(axis=0)" in wrong  # the French message names the fix
    page = (course / "reports" / NAME / "html" / "s2.html").read_text(encoding="utf-8")
    assert "standardisation" in page  # the group's label from the assignment's definition
    assert (course / "reports" / "index.html").is_file()  # the course page lists it


def test_a_broken_definition_is_named_not_a_traceback(
    course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Is an assignment.py whose check group has no probe refused with a message naming the file?"""
    monkeypatch.chdir(course)
    broken = course / "grader_tests" / "td_broken"
    shutil.copytree(course / "grader_tests" / NAME, broken)
    (course / "source" / "td_broken").mkdir()
    (course / "source" / "td_broken" / "td_broken.md").write_text("# TD\n")
    (broken / "probe.py").unlink()
    result = CliRunner().invoke(main, ["grade", "td_broken"])
    assert result.exit_code == 2, result.output
    assert "grader_tests/td_broken/assignment.py" in result.output
    assert "probe.py is missing" in result.output
    assert "Traceback" not in result.output


def test_an_assignment_whose_profile_fails_is_named(course: Path) -> None:
    """Is a profile that raises (say, it imports another assignment's data module, now gone) a
    message naming assignment.py and the error, not a traceback?"""
    gone = course / "grader_tests" / "td_gone"
    shutil.copytree(course / "grader_tests" / NAME, gone)
    (course / "source" / "td_gone").mkdir()
    (course / "source" / "td_gone" / "td_gone.md").write_text("# TD\n")
    definition = gone / "assignment.py"
    definition.write_text(
        definition.read_text(encoding="utf-8").replace(
            "profile=lambda source: GradingProfile(",
            "profile=lambda source: __import__('grader_tests.td_other') and GradingProfile(",
        ),
        encoding="utf-8",
    )
    with pytest.raises(TdkitError) as raised:
        Course(course, "td_gone").grading_profile()
    assert str(raised.value).startswith(f"{definition}: its grading profile failed")
    assert "ModuleNotFoundError" in str(raised.value)
