"""Where things are in an nbgrader course directory run by tdkit."""

from __future__ import annotations

import copy
import functools
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from tdkit.core.assignment import (
    DEFINITION,
    PACKAGE,
    Assignment,
    GradingProfile,
    load_assignment,
    use_course,
)
from tdkit.core.config import DB_URL_ENV
from tdkit.core.errors import TdkitError

CONFIG_FILE = "nbgrader_config.py"
LOCAL_DB_URL = Path(".tdkit") / "db_url"  # ...or from this untracked file of the course directory
WHERE_DB_URL_GOES = (
    f"put the URL in the environment variable {DB_URL_ENV} or in the untracked file {LOCAL_DB_URL} "
    "(chmod 600), or keep a URL without password and give the password to PostgreSQL's client as "
    "PGPASSWORD or in ~/.pgpass (docs/instructor.md, 'PostgreSQL gradebook')"
)


T = TypeVar("T")
_DEFINITIONS: dict[tuple[Path, str, int], Assignment] = {}
URL_WITH_PASSWORD = re.compile(r"[A-Za-z][\w+.-]*://[^\s/@'\"]*:[^\s/@'\"]+@")


def url_password(url: str) -> str | None:
    """The password a database URL holds, if any."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def gradebook_url(config_file: str | Path) -> str | None:
    """For nbgrader_config.py: the gradebook URL it must set (``local_db_url``), after refusing
    any password written in that file, so that tdkit, nbgrader and formgrader all refuse it.

    Refuses with SystemExit: nbgrader logs any other exception of a config file and goes on
    without it, on an empty SQLite gradebook; ``Course.nbgrader_config`` makes it a TdkitError."""
    path = Path(config_file)
    try:
        if URL_WITH_PASSWORD.search(path.read_text(encoding="utf-8")):
            raise TdkitError(
                f"{path} holds a database password, and the course repository commits that file: "
                f"remove it there, change that password if it was ever committed, and {WHERE_DB_URL_GOES}."
            )
        return local_db_url(path.parent)
    except TdkitError as error:
        raise SystemExit(f"tdkit: {error}") from None


def _tracked(root: Path, path: Path) -> bool:
    """Whether git tracks ``path`` in the repository around ``root`` (no git, no repository: no)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--error-unmatch", str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def local_db_url(root: str | Path) -> str | None:
    """The gradebook URL from ``TDKIT_DB_URL`` or the course's ``.tdkit/db_url`` (None: neither).

    nbgrader_config.py passes it to nbgrader, so formgrader and ``nbgrader export`` use it too.
    Refused when the file holds a password and git tracks it."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    if url:
        return url
    path = Path(root) / LOCAL_DB_URL
    if not path.is_file():
        return None
    url = path.read_text(encoding="utf-8").strip()
    if url_password(url) and _tracked(Path(root), path):
        raise TdkitError(
            f"{path} holds the gradebook's password and is committed to git: git rm --cached it, "
            f"change that password (it is in the history), and {WHERE_DB_URL_GOES}."
        )
    return url or None


def course_assignments(root: Path) -> list[str]:
    """The course's assignments, as nbgrader lays them out: each folder ``source/<name>/`` that
    holds its master notebook ``<name>.md`` or ``<name>.ipynb``."""
    source = root / "source"
    if not source.is_dir():
        return []
    return sorted(
        folder.name
        for folder in source.iterdir()
        if folder.is_dir()
        and any((folder / f"{folder.name}{suffix}").is_file() for suffix in (".md", ".ipynb"))
    )


def assignment_at(root: Path, path: Path) -> str | None:
    """The assignment of the course at ``root`` that ``path`` belongs to: the one a folder of it
    or its file name names (``source/td_cnn/``, ``td_cnn.ipynb``), else the course's only one;
    None when it cannot tell."""
    found = course_assignments(root)
    named = [a for a in found if a in path.parts or a == path.stem]
    chosen = named or (found if len(found) == 1 else [])
    return chosen[0] if chosen else None


def choose_assignment(root: Path, asked: str | None) -> str:
    """``asked``, once the course has it; else the course's only assignment ("" when it has none
    yet: the command that needs one says which file is missing)."""
    found = course_assignments(root)
    if asked is None:
        if len(found) > 1:
            raise TdkitError(
                f"This course has {len(found)} assignments ({', '.join(found)}): name the one to "
                f"work on, e.g. 'tdkit grade {found[0]}'."
            )
        return found[0] if found else ""
    if asked not in found:
        raise TdkitError(
            f"No assignment {asked!r} in {root}: the course has "
            f"{', '.join(found) or 'none'} (one folder source/<name>/ with <name>.md each)."
        )
    return asked


@dataclass(frozen=True)
class Course:
    """An nbgrader course directory and the assignment a command works on (default: the course's
    only one)."""

    root: Path
    assignment: str = ""

    def __post_init__(self) -> None:
        if not self.assignment:
            object.__setattr__(self, "assignment", choose_assignment(self.root, None))

    @property
    def source_md(self) -> Path:
        return self.root / "source" / self.assignment / f"{self.assignment}.md"

    @property
    def release_notebook(self) -> Path:
        return self.root / "release" / self.assignment / f"{self.assignment}.ipynb"

    @property
    def grader_tests(self) -> Path:
        """The assignment's grading side: a package of the course's ``grader_tests``."""
        return self.root / PACKAGE / self.assignment

    def definition(self) -> Assignment:
        """What the assignment gives the engine (``grader_tests/<name>/assignment.py``), loaded
        once per process while that file is unchanged."""
        path = self.grader_tests / DEFINITION
        key = (
            self.root.resolve(),
            self.assignment,
            path.stat().st_mtime_ns if path.is_file() else 0,
        )
        if key in _DEFINITIONS:
            use_course(self.root)  # as load_assignment does: this course's modules, not another's
        else:
            _DEFINITIONS[key] = load_assignment(self.root, self.assignment)
        return _DEFINITIONS[key]

    def grading_profile(self, source: str | None = None) -> GradingProfile:
        """The assignment's profile of a grading run (``source``: its data, None the default)."""
        return self._content("grading profile", lambda: self.definition().profile(source))

    def release_profile(self) -> GradingProfile:
        """The assignment's profile of ``tdkit release``'s run of the solution."""
        return self._content("release profile", lambda: self.definition().release_profile())

    def demo_source(self, say: Callable[[str], None]) -> str | None:
        """The data ``tdkit demo`` grades the assignment's examples on (None: the default)."""
        return self._content("demo data", lambda: self.definition().demo_source(self.root, say))

    def _content(self, what: str, call: Callable[[], T]) -> T:
        """Run the assignment's own code: a failure names its file, never a traceback."""
        try:
            return call()
        except TdkitError:
            raise
        except Exception as error:  # noqa: BLE001 - the instructor's code, whatever it raises
            raise TdkitError(
                f"{self.grader_tests / DEFINITION}: its {what} failed: "
                f"{type(error).__name__}: {error}"
            ) from None

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def db_url(self) -> str:
        """The gradebook's URL; a password written in nbgrader_config.py (a committed file) is refused."""
        configured = self.nbgrader_config().CourseDirectory.get("db_url")
        if not configured:
            return f"sqlite:///{self.root / 'gradebook.db'}"
        url = str(configured)
        if url_password(url) and url != local_db_url(self.root):
            raise TdkitError(
                f"{self.root / CONFIG_FILE} holds the gradebook's password, and the course repository "
                f"commits that file: remove it from db_url there, change that password if it was ever "
                f"committed, and {WHERE_DB_URL_GOES}."
            )
        return url

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

    def checked(self) -> Course:
        """This course, once its configuration loads and its gradebook URL is acceptable (a password
        written in nbgrader_config.py is refused here, before any work)."""
        _ = self.db_url
        return self

    def nbgrader_config(self) -> Config:
        """``nbgrader_config.py`` of the course, with the root pinned to this directory: executed
        once per command (kept on this object while the file is unchanged), whatever reads it."""
        path = self.root / CONFIG_FILE
        if not path.is_file():
            raise TdkitError(f"{path} is missing: tdkit runs in an nbgrader course directory.")
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        kept = self.__dict__.get("_loaded")
        if kept is None or kept[0] != key:
            kept = (key, self._load_config(path))
            object.__setattr__(self, "_loaded", kept)  # frozen: the one cache it holds
        # A copy each time: some readers set values on theirs (nbgrader's release in a scratch folder).
        return copy.deepcopy(cast(Config, kept[1]))

    def _load_config(self, path: Path) -> Config:
        try:
            config = PyFileConfigLoader(CONFIG_FILE, path=str(self.root)).load_config()
        except SystemExit as refused:  # nbgrader_config.py refuses to load (gradebook_url): say why
            raise TdkitError(str(refused.code).removeprefix("tdkit: ")) from None
        except Exception as error:  # noqa: BLE001 - any mistake in the file: name its line, not a traceback
            raise TdkitError(config_file_error(path, error)) from None
        config.CourseDirectory.root = str(self.root)
        return config


def config_file_error(path: Path, error: Exception) -> str:
    """What is wrong with nbgrader_config.py, at which line, for an exception raised loading it."""
    if isinstance(error, SyntaxError):
        line, what = error.lineno, f"{error.msg}: {(error.text or '').strip()!r}"
    else:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(path)]
        line = frames[-1].lineno if frames else None
        what = f"{type(error).__name__}: {error}"
    where = f"{path}, line {line}" if line else str(path)
    return (
        f"{where}: {what}. Fix that line (the file is Python: 'c.Section.key = value'), then run "
        "the command again."
    )


def find_course(start: Path | None = None, assignment: str | None = None) -> Course:
    """The course whose ``nbgrader_config.py`` is in ``start`` (default: cwd) or above, working on
    ``assignment`` (default: the course's only one)."""
    root = find_course_root(start)
    return Course(root, choose_assignment(root, assignment)).checked()


def find_course_root(start: Path | None = None) -> Path:
    """The folder of the first ``nbgrader_config.py`` in ``start`` (default: cwd) or above."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise TdkitError(
        f"No {CONFIG_FILE} in {here} or above: cd into the course directory (the tdkit repository)."
    )


def in_process_alembic_head() -> None:
    """nbgrader's Gradebook, creating a database, asks a new ``alembic heads`` process for the
    revision to stamp: 6 s of CPU (it imports all of nbgrader), and a failure when tdkit is called
    as ``.venv/bin/tdkit`` without an activated venv. Here the same migration scripts answer in
    this process, once."""
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


@functools.cache
def alembic_head() -> str:
    """The head revision of nbgrader's migrations: what ``alembic heads`` prints first."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    config = AlembicConfig()
    config.set_main_option("script_location", ALEMBIC_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise TdkitError(f"nbgrader's migrations in {ALEMBIC_DIR} name no head revision.")
    return head
