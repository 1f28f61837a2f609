"""Before ``tdkit grade`` grades anyone: every file of the instructor's that grading reads, checked.

A mistake in nbgrader_config.py or td-requirements.txt, an extension for nobody, a damaged roster,
a timestamp that is not a date, an unwritable reports/ folder or a locked gradebook would otherwise
show after the whole class was graded, or never (a penalty silently kept). Here it stops the run first, with one
message saying which file, what was found and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nbgrader.utils import parse_utc

from tdkit.core.course import Course, in_process_alembic_head
from tdkit.core.errors import TdkitError
from tdkit.core.files import require_writable
from tdkit.core.gradebook_file import check_gradebook
from tdkit.core.student_ids import could_mean
from tdkit.intake.late import Deadlines
from tdkit.intake.roster import Roster, load_roster

MAX_TIMESTAMP_CHARS = 100  # what grading reads of timestamp.txt (tdkit.trusted.grade._submitted_at)


def preflight(course: Course, students: list[str], deadlines: Deadlines) -> list[str]:
    """Raise a TdkitError for the first mistake found; return notes on how files were read.

    The course's settings (``grading_settings``: nbgrader_config.py, td-requirements.txt, the
    assignment's definition) were read and checked before; ``deadlines`` are theirs."""
    roster = load_roster(course)
    for student_id in students:
        check_timestamp(course.submitted_notebook(student_id).parent / "timestamp.txt")
    for folder in (course.reports, course.reports / "html", course.root / "autograded"):
        require_writable(folder, "tdkit grade")
    check_gradebook(course)
    check_extensions(deadlines, roster, set(students), lambda: gradebook_students(course))
    return list(deadlines.notes)


def check_timestamp(stamp: Path) -> None:
    """timestamp.txt, when there is one, is a date nbgrader reads: never taken as 'on time'."""
    if not stamp.exists() and not stamp.is_symlink():
        return  # no date: on time, and the class summary counts it
    fix = (
        "write it as nbgrader does ('2026-12-04 17:55:00.000000 Europe/Paris'), or collect the "
        "submission again with --worksheet (it writes Moodle's date), or delete the file to count "
        "the submission as on time; then grade again"
    )
    if stamp.is_symlink() or not stamp.is_file():
        raise TdkitError(f"{stamp} is not a plain file: {fix}.")
    with open(stamp, "rb") as file:
        data = file.read(MAX_TIMESTAMP_CHARS + 1)
    text = data.decode("utf-8", errors="replace").strip()
    try:
        if len(data) > MAX_TIMESTAMP_CHARS or not text:
            raise ValueError(text)
        parse_utc(text)
    except (ValueError, OverflowError):
        raise TdkitError(f"{stamp}: {text[:60]!r} is not a date: {fix}.") from None


def check_extensions(
    deadlines: Deadlines,
    roster: Roster,
    submitted: set[str],
    in_gradebook: Callable[[], set[str]],
) -> None:
    """Each extension is for a student tdkit knows, and for the member whose due date counts."""
    known = set(roster.participants) | submitted
    asked = False  # the gradebook is asked once, only for an id known nowhere else
    for sid in deadlines.extensions:
        what = f"nbgrader_config.py: {deadlines.extensions_setting}[{sid!r}]"
        group = roster.group_of(sid)
        if group is not None and group.graded is not None and group.graded != sid:
            raise TdkitError(
                f"{what}: {sid} hands in with group {group.name!r}, whose notebook is graded under "
                f"{group.graded}: the group's due date is {group.graded}'s. Key the extension by "
                f"{group.graded!r}."
            )
        if sid not in known and not asked:
            known |= in_gradebook()
            asked = True
        if sid not in known:
            raise TdkitError(
                f"{what}: no student {sid} in the grading worksheet, submitted/ or the gradebook; "
                f"{could_mean(sid, known)} Fix the id (Moodle's « Participant NNNN » number), or "
                "remove the line until that student is collected."
            )


def gradebook_students(course: Course) -> set[str]:
    from nbgrader.api import Gradebook

    in_process_alembic_head()
    with Gradebook(course.db_url, course.course_id) as gb:
        return {student.id for student in gb.students}
