"""Does every command work on one assignment of the course, named or, while there is only one,
left out, and say which ones exist when it cannot choose?"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tdkit.cli import main
from tdkit.core.course import Course, course_assignments, find_course
from tdkit.core.errors import TdkitError


def _course(root: Path, *assignments: str) -> Path:
    root.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n")
    for name in assignments:
        (root / "source" / name).mkdir(parents=True)
        (root / "source" / name / f"{name}.md").write_text("# TD\n", encoding="utf-8")
    (root / "source" / "notes").mkdir(parents=True)  # a folder without its notebook: not one
    return root


def test_the_only_assignment_is_the_default(tmp_path: Path) -> None:
    """With one assignment, is it the one every path names, without being told?"""
    course = Course(_course(tmp_path / "c", "td_mlp"))
    assert course.assignment == "td_mlp"
    assert course.reports == tmp_path / "c" / "reports" / "td_mlp"
    assert course.release_notebook == tmp_path / "c" / "release" / "td_mlp" / "td_mlp.ipynb"


def test_several_assignments_must_be_named(tmp_path: Path) -> None:
    """With two, does leaving it out name both, and naming one choose it?"""
    root = _course(tmp_path / "c", "td_cnn", "td_mlp")
    assert course_assignments(root) == ["td_cnn", "td_mlp"]
    with pytest.raises(TdkitError, match=r"2 assignments \(td_cnn, td_mlp\).*tdkit grade td_cnn"):
        find_course(root)
    assert find_course(root, "td_mlp").reports == root / "reports" / "td_mlp"


def test_an_unknown_assignment_is_refused_by_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Does each command refuse a name the course does not have, listing the ones it has?"""
    monkeypatch.chdir(_course(tmp_path / "c", "td_cnn"))
    for command in (
        ["release", "td_mlp"],
        ["grade", "td_mlp"],
        ["report", "td_mlp"],
        ["status", "td_mlp"],
        ["export", "moodle", "td_mlp"],
        ["similarity", "td_mlp"],
        ["collect", "x.zip", "--assignment", "td_mlp"],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        assert "No assignment 'td_mlp'" in result.output and "td_cnn" in result.output, command
