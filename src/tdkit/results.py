"""The results object of a grading run, and its files: ``results.json`` and ``grades.csv``.

``results.json`` has exactly this shape (other tools read it; extra keys are allowed)::

    {"assignment": "td_cnn",
     "students": {"<student_id>": {"checks": {"<check_id>": {"passed": bool, "points": float,
                                                             "max_points": float, "message": str}},
                                   ...extra keys: score, max_score, seconds, failure, errors,
                                   curves, confusion, manual, fingerprint, grader_failure}}}
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdkit.checks import CheckResult
from tdkit.execute import CellError
from tdkit.files import write_atomically


@dataclass
class StudentResult:
    student_id: str
    checks: list[CheckResult]
    seconds: float = 0.0  # wall time of the whole grading of this submission
    failure: str | None = None  # the run stopped early: timeout, dead kernel, unreadable notebook
    errors: list[CellError] = field(default_factory=list)  # cells that raised, with tracebacks
    # Loss per epoch of the student's train() and the reference's, on the same grader inputs.
    curves: dict[str, list[float] | None] = field(default_factory=dict)
    # Confusion matrices (10x10 lists) of the student's function and the reference's.
    confusion: dict[str, list[list[float]] | None] = field(default_factory=dict)
    # Manually graded cells (free-text answers): grade_id -> max points.
    manual: dict[str, float] = field(default_factory=dict)
    # What it was graded from: {"submission": digest, "grader": {part: digest}} (tdkit.incremental).
    fingerprint: dict[str, Any] = field(default_factory=dict)
    grader_failure: bool = False  # failed on the grader's side, not the student's: graded again next time

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": {c.check_id: c.to_json() for c in self.checks},
            "score": self.score,
            "max_score": self.max_score,
            "seconds": round(self.seconds, 3),
            "failure": self.failure,
            "errors": [e.__dict__ for e in self.errors],
            "curves": self.curves,
            "confusion": self.confusion,
            "manual": self.manual,
            "fingerprint": self.fingerprint,
            "grader_failure": self.grader_failure,
        }

    @classmethod
    def from_json(cls, student_id: str, record: dict[str, Any]) -> StudentResult:
        return cls(
            student_id,
            [CheckResult(cid, **c) for cid, c in record["checks"].items()],
            seconds=float(record.get("seconds", 0.0)),
            failure=record.get("failure"),
            errors=[CellError(**e) for e in record.get("errors", [])],
            curves=record.get("curves", {}),
            confusion=record.get("confusion", {}),
            manual=record.get("manual", {}),
            fingerprint=record.get("fingerprint", {}),
            grader_failure=bool(record.get("grader_failure", False)),
        )


@dataclass
class AssignmentResults:
    assignment: str
    students: dict[str, StudentResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment,
            "students": {sid: self.students[sid].to_json() for sid in sorted(self.students)},
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AssignmentResults:
        return cls(
            record["assignment"],
            {sid: StudentResult.from_json(sid, r) for sid, r in record["students"].items()},
        )


def write_results_json(results: AssignmentResults, path: Path) -> None:
    write_atomically(path, json.dumps(results.to_json(), ensure_ascii=False, indent=1, allow_nan=False) + "\n")


def read_results_json(path: Path) -> AssignmentResults:
    return AssignmentResults.from_json(json.loads(path.read_text(encoding="utf-8")))


def write_grades_csv(results: AssignmentResults, path: Path) -> None:
    """One row per student for the LMS: automatic score out of the automatic maximum."""
    from io import StringIO

    buffer = StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student_id", "assignment", "auto_score", "auto_max_score", "failed_checks", "failure"])
    for sid in sorted(results.students):
        student = results.students[sid]
        failed = sum(not c.passed for c in student.checks)
        writer.writerow([sid, results.assignment, f"{student.score:g}", f"{student.max_score:g}", failed, student.failure or ""])
    write_atomically(path, buffer.getvalue())
