"""The course's grade, from its one source of truth: the nbgrader gradebook.

tdkit writes the automatic points of each test cell there; the TA writes the hand grading of
the free-text answers, the overrides of automatic cells (a manual score on a test cell) and the
comments, in formgrader. Every output (results.json, grades.csv, the pages, the Moodle files)
reads the grade of each student through ``course_grades``, which copies the gradebook's
cells into the results, puts a group's hand grading on every member (and in their gradebook
entries, so that ``nbgrader export`` agrees), and takes the late penalty off the whole grade.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nbgrader.api import Gradebook, MissingEntry

from tdkit.core.assignment import Assignment
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.core.gradebook_file import sqlite_path
from tdkit.core.transaction import one_transaction
from tdkit.intake.late import Deadlines, deadlines_from_config
from tdkit.reports.results import (
    AssignmentResults,
    CellGrade,
    StudentResult,
    write_grades_csv,
    write_results_json,
)
from tdkit.reports.results_file import load_results
from tdkit.trusted.gradebook import cell_groups, writing_gradebook


def _reason(comments: dict[str, str], groups: list[str], definition: Assignment) -> str | None:
    """The reason of an override: formgrader comments only the solution cells, so the TA writes it
    on the cell of a function the test cell checks (its grade_id is the function's name)."""
    names = [n for g in groups if (found := definition.group(g)) for n in (found.function, g)]
    said = [comments.pop(n) for n in dict.fromkeys(names) if n in comments]
    return "\n".join(said) or None


def _cells(
    gb: Gradebook, course: Course, student_id: str, auto: dict[str, list[str]]
) -> list[CellGrade]:
    """The graded cells of ``student_id``'s submission as the gradebook holds them (none if absent)."""
    try:
        notebook = gb.find_submission_notebook(course.assignment, course.assignment, student_id)
    except MissingEntry:
        return []
    comments = {
        c.name: c.manual_comment.strip()
        for c in notebook.comments
        if c.manual_comment and c.manual_comment.strip()
    }
    cells = []
    for grade in sorted(notebook.grades, key=lambda g: g.name):
        cell = CellGrade(
            cell=grade.name,
            kind="auto" if grade.name in auto else "hand",
            max_points=float(grade.max_score or 0.0),
            auto_points=grade.auto_score,
            manual_points=grade.manual_score,
            extra_credit=float(grade.extra_credit or 0.0),
            needs_grading=bool(grade.needs_manual_grade),
        )
        if cell.kind == "hand":
            cell = dataclasses.replace(cell, comment=comments.pop(grade.name, None))
        elif cell.overridden:
            cell = dataclasses.replace(
                cell, comment=_reason(comments, auto[grade.name], course.definition())
            )
        cells.append(cell)
    # Comments on cells that carry no points (a function's code cell): still the TA's words.
    cells += [
        CellGrade(cell=name, kind="comment", max_points=0.0, comment=text)
        for name, text in sorted(comments.items())
    ]
    return cells


def _pair_notebooks(gb: Gradebook, course: Course, source: str, member: str) -> tuple[Any, Any]:
    """The graded member's and ``member``'s submitted notebooks (None when either is absent)."""
    try:
        return (
            gb.find_submission_notebook(course.assignment, course.assignment, source),
            gb.find_submission_notebook(course.assignment, course.assignment, member),
        )
    except MissingEntry:
        return None, None


def _same_cells(theirs: Any, ours: Any) -> list[tuple[Any, Any]]:
    """(their entry, ours) for each cell both notebooks hold (grades or comments)."""
    by_name = {entry.name: entry for entry in ours}
    return [(entry, by_name[entry.name]) for entry in theirs if entry.name in by_name]


def _adopt_hand_grading(gb: Gradebook, course: Course, source: str, member: str) -> None:
    """A TA who graded or commented ``member``'s copy of the group's notebook instead of the
    graded member's (formgrader lists both) has that work kept: it goes to the group's notebook
    where the group's has none."""
    theirs, ours = _pair_notebooks(gb, course, source, member)
    if theirs is None:
        return
    for grade, mine in _same_cells(theirs.grades, ours.grades):
        if grade.manual_score is None and mine.manual_score is not None:
            grade.manual_score, grade.needs_manual_grade = mine.manual_score, False
    for comment, mine in _same_cells(theirs.comments, ours.comments):
        if not (comment.manual_comment or "").strip() and (mine.manual_comment or "").strip():
            comment.manual_comment = mine.manual_comment


def _share_hand_grading(
    gb: Gradebook, course: Course, source: str, member: str, auto: dict[str, list[str]]
) -> None:
    """Put the graded member's hand grading and comments on ``member``'s gradebook entries."""
    theirs, ours = _pair_notebooks(gb, course, source, member)
    if theirs is None:
        return
    for grade, mine in _same_cells(theirs.grades, ours.grades):
        for field in ("manual_score", "extra_credit", "needs_manual_grade"):
            if getattr(mine, field) != getattr(grade, field):
                setattr(mine, field, getattr(grade, field))
        if grade.name not in auto and mine.auto_score != grade.auto_score:
            mine.auto_score = grade.auto_score
    for comment, mine in _same_cells(theirs.comments, ours.comments):
        if mine.manual_comment != comment.manual_comment:
            mine.manual_comment = comment.manual_comment


def _penalty(deadlines: Deadlines, student: StudentResult) -> float:
    """The late penalty on the whole grade (automatic and by hand), as nbgrader's plugin gives it."""
    return deadlines.penalty(
        student.graded_with or student.student_id, student.seconds_late, student.graded_score
    )


def with_course_grades(
    course: Course, results: AssignmentResults, deadlines: Deadlines | None = None
) -> AssignmentResults:
    """Every result with its gradebook cells and the late penalty on its whole grade; the
    gradebook gets each group's hand grading on every member and the penalties.

    ``deadlines``: the assignment's, when the command has read them already."""
    deadlines = deadlines or deadlines_from_config(course.nbgrader_config(), course.assignment)
    if not results.students or not _has_gradebook(course):
        return results
    try:
        auto = cell_groups(course)
    except MissingEntry:  # the gradebook has never seen the assignment: nothing graded by hand
        return results
    with writing_gradebook(course) as gb, one_transaction(gb):
        # Every group's hand grading in one place first, then on every member: a member read
        # before a partner would miss what the TA wrote on the partner's copy.
        partners = [
            (s.graded_with, sid)
            for sid, s in sorted(results.students.items())
            if s.graded_with and s.graded_with != sid
        ]
        for source, member in partners:
            _adopt_hand_grading(gb, course, source, member)
        for source, member in partners:
            _share_hand_grading(gb, course, source, member, auto)
        for sid in sorted(results.students):
            student = results.students[sid]
            source = student.graded_with or sid
            student = dataclasses.replace(student, cells=_cells(gb, course, source, auto))
            student = dataclasses.replace(student, late_penalty=_penalty(deadlines, student))
            results.students[sid] = student
            try:
                submitted = gb.find_submission_notebook(course.assignment, course.assignment, sid)
            except MissingEntry:
                continue
            if (submitted.late_submission_penalty or 0.0) != student.late_penalty:
                submitted.late_submission_penalty = student.late_penalty or None
    return results


def _has_gradebook(course: Course) -> bool:
    """False for an SQLite gradebook not created yet: reading results must not create one."""
    path = sqlite_path(course.db_url)
    return path is None or path.is_file()


def course_grades(course: Course) -> AssignmentResults:
    """results.json with the gradebook's cells (the TA's work since the last grading): what every
    output reads. Nothing is written: ``keep_course_grades`` does, once the output is made."""
    path = course.reports / "results.json"
    if not path.is_file():
        raise TdkitError(f"{path} does not exist: run 'tdkit grade' first, it writes it.")
    return with_course_grades(course, load_results(path))


def keep_course_grades(course: Course, results: AssignmentResults) -> None:
    """results.json and grades.csv, so that they say what the pages and Moodle files say."""
    write_results_json(results, course.reports / "results.json")
    write_grades_csv(results, course.reports / "grades.csv")
