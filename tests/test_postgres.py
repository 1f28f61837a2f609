"""A PostgreSQL gradebook: release, grade, nbgrader export and formgrader on a real server.

The server is a throwaway cluster from scripts/postgres.sh (initdb + pg_ctl in a temp dir, on
127.0.0.1 and a free port, as `nobody` when the tests run as root, a password required over
TCP); it is stopped and deleted at the end of the session, whatever happened. The URL with its
password reaches tdkit and nbgrader from the course's untracked .tdkit/db_url, never from
nbgrader_config.py, which refuses one. Skips, saying why, where PostgreSQL is unavailable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, copy_course, nbgrader_export
from servers import formgrader, get_json, grade_two, script_env

from tdkit.core.course import DB_URL_ENV, LOCAL_DB_URL, Course
from tdkit.core.errors import TdkitError
from tdkit.trusted.grade import GradeRun

POSTGRES_SH = REPO / "scripts" / "postgres.sh"

psycopg2 = pytest.importorskip(
    "psycopg2", reason="psycopg2 is not installed: pip install -e '.[scale]'"
)


@dataclass(frozen=True)
class Server:
    url: str  # without the password
    password: str

    def url_with_password(self) -> str:
        """With the password and the driver named (SQLAlchemy 2.1 reads a bare postgresql:// as
        psycopg 3, not the psycopg2 that the 'scale' extra installs)."""
        return self.url.replace(
            "postgresql://tdkit@", f"postgresql+psycopg2://tdkit:{self.password}@", 1
        )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A database on a fresh PostgreSQL server (password required), stopped at the end of the session."""
    # Under /tmp, not pytest's 0700 tmp dir: the server's unprivileged owner must reach it.
    folder = tempfile.mkdtemp(prefix="tdkit-pg-")
    try:
        started = subprocess.run(
            ["bash", str(POSTGRES_SH), "start", folder],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if started.returncode == 3:
            pytest.skip(f"PostgreSQL is not available: {started.stderr.strip()}")
        if started.returncode != 0:
            raise RuntimeError(
                f"scripts/postgres.sh start failed:\n{started.stdout}\n{started.stderr}"
            )
        yield Server(
            started.stdout.strip().splitlines()[-1], (Path(folder) / "password").read_text().strip()
        )
    finally:
        subprocess.run(
            ["bash", str(POSTGRES_SH), "stop", folder],
            check=False,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def pg_graded(
    postgres: Server, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Course, GradeRun]:
    root = copy_course(tmp_path_factory.mktemp("pg-course"))
    local = root / LOCAL_DB_URL  # as docs/instructor.md says: untracked, readable by its owner only
    local.parent.mkdir()
    local.write_text(postgres.url_with_password() + "\n", encoding="utf-8")
    local.chmod(0o600)
    course = Course(root)
    assert course.db_url == postgres.url_with_password()
    return grade_two(course.root)


def test_gradebook_rows_are_in_postgresql(
    pg_graded: tuple[Course, GradeRun], postgres: Server
) -> None:
    """Are the assignment, its cells and both students' tdkit scores in PostgreSQL, and no SQLite
    gradebook written beside the course?"""
    course, run = pg_graded
    assert not (course.root / "gradebook.db").exists()
    with psycopg2.connect(postgres.url, password=postgres.password) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM assignment")
        assert [row[0] for row in cur.fetchall()] == ["td_cnn"]
        cur.execute("SELECT count(*) FROM grade_cells")
        assert cur.fetchone()[0] > 0
        cur.execute(
            """SELECT sa.student_id, sum(g.auto_score)
               FROM grade g
               JOIN submitted_notebook sn ON g.notebook_id = sn.id
               JOIN submitted_assignment sa ON sn.assignment_id = sa.id
               GROUP BY sa.student_id"""
        )
        scores = dict(cur.fetchall())
    assert set(scores) == {"sol", "td"}
    for student_id, student in run.results.students.items():
        assert float(scores[student_id]) == pytest.approx(student.score), student_id


def test_nbgrader_export_reads_postgresql(
    pg_graded: tuple[Course, GradeRun], tmp_path: Path
) -> None:
    """Does nbgrader's own `nbgrader export` (db_url from nbgrader_config.py) show tdkit's scores?"""
    course, run = pg_graded
    rows = nbgrader_export(course.root, tmp_path / "grades.csv")
    assert set(rows) == {"sol", "td"}
    for student_id, student in run.results.students.items():
        assert float(rows[student_id]["score"]) == pytest.approx(student.score), student_id
    assert not (course.root / "gradebook.db").exists()


def test_formgrader_api_reads_postgresql(
    pg_graded: tuple[Course, GradeRun], tmp_path: Path
) -> None:
    """Does formgrader, started over the course, list both submissions with tdkit's scores?"""
    course, run = pg_graded
    with formgrader(course.root, tmp_path) as (base, token):
        submissions = get_json(f"{base}/formgrader/api/submissions/td_cnn?token={token}")
    by_student = {s["student"]: s for s in submissions}
    assert set(by_student) == {"sol", "td"}
    for student_id, student in run.results.students.items():
        # formgrader counts a submission as autograded when the gradebook timestamp equals
        # submitted/<id>/td_cnn/timestamp.txt (None when absent), as nbgrader autograde records it.
        assert by_student[student_id]["autograded"], (
            f"{student_id}: 'needs autograding' (timestamp)"
        )
        assert by_student[student_id]["score"] == pytest.approx(student.score), student_id


def test_password_in_nbgrader_config_is_refused(postgres: Server, tmp_path: Path) -> None:
    """Is a database password written in nbgrader_config.py (a committed file) refused by tdkit
    and by nbgrader itself, with a message that says where to put it instead?"""
    root = copy_course(tmp_path / "course")
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.CourseDirectory.db_url = {postgres.url_with_password()!r}\n")
    with pytest.raises(TdkitError, match=f"{DB_URL_ENV}.*{LOCAL_DB_URL}"):
        Course(root).nbgrader_config()
    tdkit = os.path.join(os.path.dirname(sys.executable), "tdkit")
    done = subprocess.run(
        [tdkit, "grade"],
        cwd=root,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert (
        "holds a database password" in done.stderr
        and DB_URL_ENV in done.stderr
        and str(LOCAL_DB_URL) in done.stderr
    )
    assert postgres.password not in done.stdout + done.stderr
    nbgrader = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    exported = subprocess.run(
        [nbgrader, "export", "--to", str(tmp_path / "grades.csv")],
        cwd=root,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not (tmp_path / "grades.csv").exists(), exported.stdout + exported.stderr
    assert "holds a database password" in exported.stdout + exported.stderr


def _current_user(url: str) -> str:
    """Who the server says we are, connected through SQLAlchemy as nbgrader connects."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(sqlalchemy.text("SELECT current_user")).scalar())
    finally:
        engine.dispose()


def test_password_from_the_environment(
    postgres: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Do TDKIT_DB_URL, or a URL without password in nbgrader_config.py with PGPASSWORD, reach the
    gradebook; and is a .tdkit/db_url holding a password refused once git tracks it?"""
    root = copy_course(tmp_path / "course")
    monkeypatch.setenv(DB_URL_ENV, postgres.url_with_password())
    assert _current_user(Course(root).db_url) == "tdkit"
    monkeypatch.delenv(DB_URL_ENV)
    no_password = postgres.url.replace("postgresql://", "postgresql+psycopg2://", 1)
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.CourseDirectory.db_url = {no_password!r}\n")
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    assert Course(root).db_url == no_password
    assert _current_user(Course(root).db_url) == "tdkit"
    local = root / LOCAL_DB_URL
    local.parent.mkdir()
    local.write_text(postgres.url_with_password(), encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-f", str(LOCAL_DB_URL)], check=True)
    with pytest.raises(TdkitError, match="committed to git"):
        Course(root).nbgrader_config()
