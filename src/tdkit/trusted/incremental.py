"""Which submissions ``tdkit grade`` grades again, and why.

A result is kept when it was graded from the same submission (the notebook's bytes and its
``timestamp.txt``) by the same grader: the committed release, the assignment's ``grader_tests/<name>/``, ``reference/``,
the limits, the grading profile (the data it gives the notebook included) and tdkit's own code.
A new or changed submission, a changed grader, a result the gradebook lacks and a last grading
that failed on the grader's side are graded again; ``--all`` grades everyone.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook

from tdkit.core.assignment import GradingProfile
from tdkit.core.config import Limits
from tdkit.core.course import Course, in_process_alembic_head
from tdkit.core.files import sha256_hex, tree_digest
from tdkit.release.environment import ENVIRONMENT_FILE
from tdkit.reports.results import AssignmentResults
from tdkit.trusted.distributed import code_digest

SUBMISSION = "submission"  # key of the submission's digest in a result's fingerprint
GRADER = "grader"  # key of the grader's parts
NEW, CHANGED, GRADER_FAILED, NOT_IN_GRADEBOOK, ASKED, ALL = (
    "new submission",
    "submission changed",
    "last grading failed on the grader's side",
    "not in the gradebook",
    "asked with --student",
    "--all",
)


def grader_fingerprint(course: Course, limits: Limits, profile: GradingProfile) -> dict[str, str]:
    """A digest of each part of the grader that can change a score."""
    return {
        "release": tree_digest(course.release_notebook),
        "grader_tests": tree_digest(course.grader_tests),
        "reference": tree_digest(course.root / "reference"),
        # What the student's imports may reach (tdkit.release.environment): a declared package changes scores.
        "environment": tree_digest(course.root / ENVIRONMENT_FILE),
        "limits": sha256_hex(json.dumps(asdict(limits), sort_keys=True).encode()),
        # The data's content, not its path: another machine with the same data grades the same.
        "profile": _profile_digest(profile),
        "tdkit": code_digest(),
    }


def _profile_digest(profile: GradingProfile) -> str:
    """The parameters, with each data folder's path (it differs between machines) replaced by a
    digest of its content, digested once."""
    data = {str(folder): tree_digest(folder) for folder in profile.data_dirs}
    parameters = {
        name: data.get(value, value) if isinstance(value, str) else value
        for name, value in profile.parameters.items()
    }
    return sha256_hex(
        json.dumps(
            {"parameters": parameters, "data": list(data.values())}, sort_keys=True, default=str
        ).encode()
    )


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a regular file, never through a symlink; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        return file.read(limit)


def submission_digest(course: Course, student_id: str, limits: Limits) -> str:
    """The submitted notebook and its timestamp.txt, as grading reads them.

    A notebook that is not a regular file (a symlink, a folder) or is past the size limit digests
    as such: grading refuses it whatever its content.
    """
    notebook = course.submitted_notebook(student_id)
    limit = limits.max_notebook_bytes + 1
    data = _read_regular(notebook, limit)
    stamp = _read_regular(notebook.parent / "timestamp.txt", 100) or b""
    if data is None or len(data) == limit:
        return sha256_hex(b"refused\0" + stamp)
    return sha256_hex(sha256_hex(data).encode() + b"\0" + stamp)


def in_gradebook(course: Course) -> set[str]:
    """Students with a submission of the assignment in the gradebook."""
    in_process_alembic_head()
    with Gradebook(course.db_url, course.course_id) as gb:
        return {s.student_id for s in gb.assignment_submissions(course.assignment)}


@dataclass(frozen=True)
class Plan:
    """Who is graded this time and why; whose result is kept."""

    grade: dict[str, str] = field(default_factory=dict)  # student -> why
    keep: list[str] = field(default_factory=list)  # unchanged since their last grading

    def summary(self) -> str:
        why = Counter(reason.split(":")[0] for reason in self.grade.values())
        reasons = ", ".join(
            f"{n} {reason}" for reason, n in sorted(why.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        kept = f"skipped {len(self.keep)} unchanged submission(s) (same notebook, same grader: results kept)"
        return f"{kept}; grading {len(self.grade)}" + (f" ({reasons})" if reasons else "")


def _changed_parts(before: object, now: Mapping[str, str]) -> list[str]:
    if not isinstance(before, dict):
        return ["no fingerprint recorded"]
    return [part for part in now if before.get(part) != now[part]]


def plan(
    students: Iterable[str],
    previous: AssignmentResults | None,
    grader: Mapping[str, str],
    submissions: Mapping[str, str],
    graded_in_gradebook: set[str],
    *,
    everyone: bool = False,
) -> Plan:
    """Grade a student unless the last result came from this very submission and grader."""
    result = Plan()
    for sid in students:
        last = previous.students.get(sid) if previous is not None else None
        if everyone:
            result.grade[sid] = ALL
        elif last is None:
            result.grade[sid] = NEW
        elif last.fingerprint.get(SUBMISSION) != submissions[sid]:
            result.grade[sid] = CHANGED
        elif changed := _changed_parts(last.fingerprint.get(GRADER), grader):
            result.grade[sid] = "grader changed: " + ", ".join(changed)
        elif last.grader_failure:
            result.grade[sid] = GRADER_FAILED
        elif sid not in graded_in_gradebook:
            result.grade[sid] = NOT_IN_GRADEBOOK
        else:
            result.keep.append(sid)
    return result
