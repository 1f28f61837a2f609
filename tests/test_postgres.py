"""A PostgreSQL gradebook: release, grade, nbgrader export and formgrader on a real server.

The server is a throwaway cluster from scripts/postgres.sh (initdb + pg_ctl in a temp dir, on
127.0.0.1 and a free port, as `nobody` when the tests run as root); it is stopped and deleted at
the end of the session, whatever happened. Skips, saying why, where PostgreSQL is unavailable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, copy_course
from servers import formgrader, get_json, grade_two, script_env

from tdkit.course import Course
from tdkit.grade import GradeRun

POSTGRES_SH = REPO / "scripts" / "postgres.sh"

psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install -e '.[scale]'")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database on a fresh PostgreSQL server, stopped at the end of the session."""
    # Under /tmp, not pytest's 0700 tmp dir: the server's unprivileged owner must reach it.
    folder = tempfile.mkdtemp(prefix="tdkit-pg-")
    try:
        started = subprocess.run(
            ["bash", str(POSTGRES_SH), "start", folder],
            check=False, capture_output=True, text=True, timeout=300,
        )
        if started.returncode == 3:
            pytest.skip(f"PostgreSQL is not available: {started.stderr.strip()}")
        if started.returncode != 0:
            raise RuntimeError(f"scripts/postgres.sh start failed:\n{started.stdout}\n{started.stderr}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(POSTGRES_SH), "stop", folder], check=False, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pg_graded(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    root = copy_course(tmp_path_factory.mktemp("pg-course"))
    # The driver named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, not the psycopg2
    # that the 'scale' extra installs.
    db_url = postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")
    course = Course(root)
    assert course.db_url == db_url
    return grade_two(course.root)


def test_gradebook_rows_are_in_postgresql(pg_graded: tuple[Course, GradeRun], postgres_url: str) -> None:
    """Are the assignment, its cells and both students' tdkit scores in PostgreSQL, and no SQLite
    gradebook written beside the course?"""
    course, run = pg_graded
    assert not (course.root / "gradebook.db").exists()
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
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


def test_nbgrader_export_reads_postgresql(pg_graded: tuple[Course, GradeRun], tmp_path: Path) -> None:
    """Does nbgrader's own `nbgrader export` (db_url from nbgrader_config.py) show tdkit's scores?"""
    course, run = pg_graded
    out = tmp_path / "grades.csv"
    nbgrader = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    subprocess.run(
        [nbgrader, "export", "--to", str(out)], cwd=course.root, env=script_env(), check=True, capture_output=True
    )
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    rows = {row[header.index("student_id")]: row for row in (line.split(",") for line in lines[1:])}
    assert set(rows) == {"sol", "td"}
    for student_id, student in run.results.students.items():
        assert float(rows[student_id][header.index("score")]) == pytest.approx(student.score), student_id
    assert not (course.root / "gradebook.db").exists()


def test_formgrader_api_reads_postgresql(pg_graded: tuple[Course, GradeRun], tmp_path: Path) -> None:
    """Does formgrader, started over the course, list both submissions with tdkit's scores?"""
    course, run = pg_graded
    with formgrader(course.root, tmp_path) as (base, token):
        submissions = get_json(f"{base}/formgrader/api/submissions/td_cnn?token={token}")
    by_student = {s["student"]: s for s in submissions}
    assert set(by_student) == {"sol", "td"}
    for student_id, student in run.results.students.items():
        # formgrader counts a submission as autograded when the gradebook timestamp equals
        # submitted/<id>/td_cnn/timestamp.txt (None when absent), as nbgrader autograde records it.
        assert by_student[student_id]["autograded"], f"{student_id}: 'needs autograding' (timestamp)"
        assert by_student[student_id]["score"] == pytest.approx(student.score), student_id
