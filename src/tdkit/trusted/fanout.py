"""The step after grading: lateness on every result, and a group's result given to every member.

Runs once the batch is graded, before results.json, grades.csv and the reports are written: the
grading loop itself knows nothing of groups. A group's notebook was graded once (under the
member whose folder holds it, see ``tdkit.intake.roster``); each other member gets the same checks,
score, penalty and feedback page, in the gradebook too (same one-transaction write per
student), and the autograded notebook beside theirs for formgrader. A group whose members
already hold its result is left as it is: an unchanged class costs no gradebook write.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Collection
from datetime import timezone

import nbformat

from tdkit.core.course import Course
from tdkit.intake.late import Deadlines
from tdkit.intake.roster import load_roster
from tdkit.reports.results import AssignmentResults, StudentResult
from tdkit.trusted.gradebook import record_grades


def _with_lateness(
    result: StudentResult, deadlines: Deadlines, timestamp: str | None
) -> StudentResult:
    late = deadlines.assess(result.student_id, timestamp, result.score)
    submitted = late.submitted.astimezone(timezone.utc).isoformat() if late.submitted else None
    return dataclasses.replace(
        result, submitted_at=submitted, seconds_late=late.seconds_late, late_penalty=late.penalty
    )


def after_grading(
    course: Course,
    results: AssignmentResults,
    graded: list[str],
    regraded: Collection[str],
    deadlines: Deadlines,
) -> AssignmentResults:
    """Lateness for every student in ``graded``, then each group's result for its other members
    where the graded member was ``regraded`` now or a member's result is not the group's."""
    from tdkit.trusted.grade import _submitted_at  # grade imports this module: import at call time

    roster = load_roster(course)
    for sid in graded:
        if sid in results.students:
            group = roster.group_of(sid)
            result = dataclasses.replace(results.students[sid], group=group.name if group else None)
            results.students[sid] = _with_lateness(result, deadlines, _submitted_at(course, sid))
    for group in roster.groups:
        if group.graded not in graded or group.graded not in results.students:
            continue
        source = results.students[group.graded]
        shared = {
            m: dataclasses.replace(source, student_id=m, graded_with=group.graded)
            for m in group.members
            if m != group.graded
        }
        if group.graded not in regraded and all(
            results.students.get(m) == r for m, r in shared.items()
        ):
            continue
        timestamp = _submitted_at(course, group.graded)
        autograded = course.autograded_notebook(group.graded)
        executed = nbformat.read(autograded, as_version=4) if autograded.is_file() else None
        for member, result in shared.items():
            # The group's lateness and penalty (the graded member's due date) go to every member.
            results.students[member] = result
            record_grades(
                course,
                member,
                source.checks,
                executed,
                timestamp,
                deadlines,
                deadline_of=group.graded,
            )
            if executed is not None:
                target = course.autograded_notebook(member)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(autograded, target)
    results.conflicts = [c.describe_fr() for c in roster.conflicts]
    return results
