"""Write tdkit's scores into the nbgrader gradebook, so nbgrader export and formgrader show them.

Each autograded test cell of the notebook names the check groups it stands for in its hidden
tests (``check("train", globals())``); its score is the points of those checks. Free-text
answer cells are left to the TAs, as nbgrader does.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import cast

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

from tdkit.core.course import Course, in_process_alembic_head
from tdkit.core.transaction import one_transaction
from tdkit.intake.late import Deadlines
from tdkit.reports.results import CheckResult
from tdkit.untrusted.job import SandboxOutcome

CHECK_CALL = re.compile(r"""check\(\s*["'](\w+)["']""")


def cell_groups(course: Course) -> dict[str, list[str]]:
    """Autograded test cell grade_id -> the check groups its hidden tests call, from the gradebook."""
    in_process_alembic_head()
    with Gradebook(course.db_url, course.course_id) as gb:
        notebook = gb.find_notebook(course.assignment, course.assignment)
        groups = {}
        for cell in notebook.grade_cells:
            if cell.cell_type == "code":
                source = gb.find_source_cell(cell.name, course.assignment, course.assignment).source
                groups[cell.name] = CHECK_CALL.findall(source)
    return groups


def cell_scores(groups: dict[str, list[str]], checks: Iterable[CheckResult]) -> dict[str, float]:
    by_group: dict[str, float] = {}
    for result in checks:
        by_group[result.group] = by_group.get(result.group, 0.0) + result.points
    return {cell: sum(by_group.get(g, 0.0) for g in named) for cell, named in groups.items()}


@contextmanager
def writing_gradebook(course: Course) -> Iterator[Gradebook]:
    """The course's gradebook, opened to write tdkit's scores or the course's grades into it."""
    in_process_alembic_head()
    # nbgrader's own ORM code warns about autoflush on every new submission: noise for the TA.
    with warnings.catch_warnings(), Gradebook(course.db_url, course.course_id) as gb:
        warnings.simplefilter("ignore", SAWarning)
        yield gb


def _answers(notebook: NotebookNode | None) -> tuple[dict[str, float | None], dict[str, str]]:
    """Each answer a TA grades (solution and grade cells): nbgrader's automatic grade of it (0 when
    left as released, None when it waits for a TA) and a digest of its text."""
    grades: dict[str, float | None] = {}
    digests = {}
    for cell in notebook.cells if notebook is not None else []:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            grades[meta["grade_id"]] = utils.determine_grade(cell)[0]
            text = str(cell.get("source", ""))
            digests[str(meta["grade_id"])] = hashlib.sha256(text.encode()).hexdigest()
    return grades, digests


def record_grades(
    course: Course,
    student_id: str,
    checks: list[CheckResult],
    executed: NotebookNode | None,
    timestamp: str | None,
    deadlines: Deadlines,
    deadline_of: str | None = None,
    graded_answers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create or update the submission, set every autograded cell's score and the late penalty.

    The TA's work stays: a hand grade, an override (a manual score on a test cell) and the
    comments are never touched; an answer graded by a TA whose text differs from the one graded
    (``graded_answers``, the digests returned by the grading it was graded on) goes back to
    formgrader's queue with its grade kept. ``deadline_of``: whose due date applies (a group's
    graded member), when not the student's own. Returns the digests of this version's answers."""
    scores = cell_scores(cell_groups(course), checks)
    answers, digests = _answers(executed)
    with writing_gradebook(course) as gb, one_transaction(gb):
        gb.update_or_create_student(student_id)
        # nbgrader's own due date and extension: formgrader and nbgrader's lateness agree with tdkit's.
        if deadlines.due is not None:
            gb.find_assignment(course.assignment).duedate = _naive_utc(deadlines.due)
        submission = gb.update_or_create_submission(
            course.assignment, student_id, timestamp=timestamp
        )
        submission.extension = deadlines.extension(deadline_of or student_id)
        late = deadlines.assess(deadline_of or student_id, timestamp, sum(c.points for c in checks))
        notebook = gb.find_notebook(course.assignment, course.assignment)
        for cell in notebook.grade_cells:
            grade = gb.find_grade(cell.name, course.assignment, course.assignment, student_id)
            if cell.name in scores:
                grade.auto_score = min(scores[cell.name], cell.max_score)
                grade.needs_manual_grade = False  # an override stays, out of the TA's queue
                continue
            # Unchanged answer: 0 as nbgrader gives; any other answer waits for a TA.
            answer = answers.get(cell.name, 0.0) if executed is not None else 0.0
            grade.auto_score = None if answer is None else min(float(answer), cell.max_score)
            if grade.manual_score is None:
                grade.needs_manual_grade = grade.auto_score is None
            elif graded_answers is not None and graded_answers.get(
                cell.name, digests.get(cell.name)
            ) != digests.get(cell.name):
                grade.needs_manual_grade = True  # graded on another text: to grade again
        submitted = gb.find_submission_notebook(course.assignment, course.assignment, student_id)
        submitted.late_submission_penalty = late.penalty or None
    return digests


def _naive_utc(moment: datetime) -> datetime:
    """As nbgrader stores dates: naive, in UTC."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def formgrader_notebook(outcome: SandboxOutcome) -> nbformat.NotebookNode | None:
    """The notebook for formgrader: sources and metadata from the trusted prepared notebook,
    outputs from the run (which could have rewritten its executed notebook at will)."""
    if outcome.executed is None:
        return None
    try:
        ran = cast(NotebookNode, nbformat.reads(outcome.executed, as_version=4))
    except Exception:  # noqa: BLE001 - the run may have left garbage
        return None
    if outcome.prepared is None:
        return ran
    try:
        trusted = cast(NotebookNode, nbformat.reads(outcome.prepared, as_version=4))
    except Exception:  # noqa: BLE001
        return None
    ran_cells = {c.get("id"): c for c in ran.cells if c.get("cell_type") == "code"}
    for cell in trusted.cells:
        if cell.cell_type == "code" and cell.get("id") in ran_cells:
            source = ran_cells[cell.get("id")]
            outputs = source.get("outputs", [])
            cell.outputs = (
                [nbformat.from_dict(o) for o in outputs] if isinstance(outputs, list) else []
            )
            count = source.get("execution_count")
            cell.execution_count = count if isinstance(count, int) else None
    return trusted


def prepared_notebook(outcome: SandboxOutcome) -> nbformat.NotebookNode | None:
    """The trusted prepared notebook of the run (sources and metadata as graded)."""
    try:
        return nbformat.reads(outcome.prepared, as_version=4) if outcome.prepared else None
    except Exception:  # noqa: BLE001
        return None
