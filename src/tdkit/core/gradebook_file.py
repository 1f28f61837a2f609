"""The gradebook checked before any work: a locked, damaged or emptied one stops the command with
what to do, before a submission is graded or a file written.

An emptied gradebook is never rebuilt in silence: it alone holds the TAs' hand grading and
comments (formgrader) and the students' names; rebuilding it is the instructor's decision.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError

LOCK_WAIT_S = 5.0  # how long another program's write may hold the gradebook before we give up
SQLITE_HEADER = b"SQLite format 3\x00"


def check_gradebook(course: Course) -> None:
    """Raise a TdkitError when the course's gradebook cannot be written as it is."""
    url = course.db_url
    path = sqlite_path(url)
    if path is None:
        _check_server(url)
    elif path.exists():  # absent: the first grading creates it (a fresh clone)
        _check_sqlite(path)


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database (or SQLite in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _rebuild(path: Path) -> str:
    return (
        f"restore {path.name} from a backup; rebuilding it loses the TAs' hand grading and comments "
        f"(formgrader) and the students' names and e-mails: to do it anyway, move {path.name} away, then "
        "run 'tdkit collect ARCHIVE.zip --worksheet WORKSHEET.csv' and 'tdkit grade --all'. Nothing was changed"
    )


def _check_sqlite(path: Path) -> None:
    if not path.is_file():
        raise TdkitError(f"{path} is not a file: move it away; the gradebook is an SQLite file.")
    with open(path, "rb") as stream:
        header = stream.read(len(SQLITE_HEADER))
    if not header:
        raise TdkitError(f"{path} is empty (0 bytes): the gradebook was emptied; {_rebuild(path)}.")
    if header != SQLITE_HEADER:
        raise TdkitError(f"{path} is damaged (not an SQLite database); {_rebuild(path)}.")
    try:
        with closing(
            sqlite3.connect(
                f"file:{path}?mode=rw", uri=True, timeout=LOCK_WAIT_S, isolation_level=None
            )
        ) as db:
            check = db.execute("PRAGMA quick_check").fetchall()
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            db.execute("BEGIN IMMEDIATE")  # the write lock grading needs: taken, then given back
            db.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            raise TdkitError(
                f"{path} is locked by another program (formgrader, nbgrader, a sqlite3 shell, a backup "
                "tool): close it, then run the command again. Nothing was changed."
            ) from None
        raise TdkitError(f"{path} cannot be opened ({error}); {_rebuild(path)}.") from None
    except sqlite3.DatabaseError as error:
        raise TdkitError(f"{path} is damaged ({error}); {_rebuild(path)}.") from None
    if check != [("ok",)]:
        detail = "; ".join(str(row[0]) for row in check[:3])
        raise TdkitError(f"{path} is damaged ({detail}); {_rebuild(path)}.")
    if "assignment" not in tables:
        raise TdkitError(
            f"{path} holds no nbgrader table: the gradebook was emptied; {_rebuild(path)}."
        )


def _check_server(url: str) -> None:
    """A database server's gradebook answers (PostgreSQL: TDKIT_DB_URL, .tdkit/db_url)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    engine = create_engine(url)
    try:
        with engine.connect():
            pass
    except DBAPIError as error:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise TdkitError(
            f"Cannot open the gradebook {shown} ({reason}): check that the database server runs and "
            "the URL is right (docs/instructor.md, 'PostgreSQL gradebook'), then run the command again. Nothing was changed."
        ) from None
    finally:
        engine.dispose()
