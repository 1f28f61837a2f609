"""The course's page: every student across the course's assignments, one column each.

``reports/index.html``, beside each assignment's ``reports/<assignment>/``: one row per student,
the course's grade of each assignment (or why there is none yet), linked to that assignment's
feedback page. Written by ``tdkit grade`` and ``tdkit report``, from each assignment's
results.json; an assignment not graded yet has an empty column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tdkit.core.course import Course, course_assignments
from tdkit.core.files import write_atomically
from tdkit.reports.html import environment, page_name
from tdkit.reports.results import StudentResult
from tdkit.reports.results_file import load_results


@dataclass(frozen=True)
class Cell:
    """One student's result in one assignment, as the course page shows it."""

    href: str  # the feedback page, relative to reports/
    grade: float
    maximum: float
    pending: int  # answers waiting for a TA: no final grade yet


def _cell(assignment: str, student: StudentResult) -> Cell:
    return Cell(
        f"{quote(assignment)}/html/{quote(page_name(student.student_id))}",
        student.final_score,
        student.maximum,
        len(student.waiting_for),
    )


def write_course_page(course: Course) -> Path:
    """``reports/index.html`` from the results.json of every assignment of ``course``."""
    assignments = course_assignments(course.root)
    table: dict[str, dict[str, Cell]] = {}
    for assignment in assignments:
        path = course.root / "reports" / assignment / "results.json"
        if not path.is_file():
            continue
        for sid, student in load_results(path).students.items():
            table.setdefault(sid, {})[assignment] = _cell(assignment, student)
    page = (
        environment()
        .get_template("course.html")
        .render(
            assignment=", ".join(assignments),  # the footer of every page names what it comes from
            assignments=assignments,
            students=sorted(table),
            table=table,
            summaries={a: f"{quote(a)}/html/index.html" for a in assignments},
        )
    )
    target = course.root / "reports" / "index.html"
    write_atomically(target, page)
    return target
