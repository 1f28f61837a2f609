"""Where things are in an nbgrader course directory run by tdkit."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from tdkit.errors import TdkitError

CONFIG_FILE = "nbgrader_config.py"
ASSIGNMENT = "td_cnn"


@dataclass(frozen=True)
class Course:
    root: Path
    assignment: str = ASSIGNMENT

    @property
    def source_md(self) -> Path:
        return self.root / "source" / self.assignment / f"{self.assignment}.md"

    @property
    def release_notebook(self) -> Path:
        return self.root / "release" / self.assignment / f"{self.assignment}.ipynb"

    @property
    def grader_tests(self) -> Path:
        return self.root / "grader_tests"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def db_url(self) -> str:
        configured = self.nbgrader_config().CourseDirectory.get("db_url")
        return str(configured) if configured else f"sqlite:///{self.root / 'gradebook.db'}"

    @property
    def course_id(self) -> str:
        return str(self.nbgrader_config().CourseDirectory.get("course_id") or "")

    def submitted_notebook(self, student_id: str) -> Path:
        return self.submitted / student_id / self.assignment / f"{self.assignment}.ipynb"

    def autograded_notebook(self, student_id: str) -> Path:
        return self.root / "autograded" / student_id / self.assignment / f"{self.assignment}.ipynb"

    @property
    def reports(self) -> Path:
        return self.root / "reports" / self.assignment

    def nbgrader_config(self) -> Config:
        """``nbgrader_config.py`` of the course, with the root pinned to this directory."""
        path = self.root / CONFIG_FILE
        if not path.is_file():
            raise TdkitError(f"{path} is missing: tdkit runs in an nbgrader course directory.")
        config = PyFileConfigLoader(CONFIG_FILE, path=str(self.root)).load_config()
        config.CourseDirectory.root = str(self.root)
        return config


def find_course(start: Path | None = None) -> Course:
    """The course whose ``nbgrader_config.py`` is in ``start`` (default: cwd) or above."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return Course(folder)
    raise TdkitError(f"No {CONFIG_FILE} in {here} or above: cd into the course directory (the tdkit repository).")


def ensure_nbgrader_scripts() -> None:
    """Put this interpreter's scripts directory on PATH: nbgrader's gradebook runs ``alembic``
    by name, which fails when tdkit is called as ``.venv/bin/tdkit`` without an activated venv."""
    scripts = os.path.dirname(sys.executable)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
