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


def test_the_settings_are_read_once_per_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Is nbgrader_config.py executed once for all the reads of one command (one Course), and
    again once the file changes?"""
    from traitlets.config.loader import PyFileConfigLoader

    executed = []
    load = PyFileConfigLoader.load_config
    monkeypatch.setattr(
        PyFileConfigLoader, "load_config", lambda self: executed.append(1) or load(self)
    )
    root = _course(tmp_path / "c", "td_cnn")
    course = Course(root)
    for _ in range(5):
        config = course.nbgrader_config()
        assert config.CourseDirectory.root == str(root)
        config.CourseDirectory.db_url = "sqlite:////elsewhere.db"  # one reader's own change...
    assert course.db_url == f"sqlite:///{root / 'gradebook.db'}"  # ...is not the next one's
    assert len(executed) == 1
    (root / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = 'cnn-2026'\n"
    )
    assert course.course_id == "cnn-2026" and len(executed) == 2
