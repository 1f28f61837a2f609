"""The results object of a grading run, and its files: ``results.json`` and ``grades.csv``.

``results.json`` has exactly this shape (other tools read it; extra keys are allowed)::

    {"assignment": "<name>",
     "students": {"<student_id>": {"checks": {"<check_id>": {"passed": bool, "points": float,
                                                             "max_points": float, "message": str}},
                                   ...extra keys: score, max_score, seconds, failure, errors,
                                   figures, manual, missing_modules, submitted_at,
                                   seconds_late, late_penalty, final_score, group, graded_with,
                                   refused, notice, fingerprint, grader_failure,
                                   automatic, by_hand, maximum, pending, cells, answers}},
     ...extra keys: conflicts, environment}
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tdkit.core.files import write_atomically
from tdkit.untrusted.execute import CellError


@dataclass(frozen=True)
class CheckResult:
    """One hidden check's outcome for one submission."""

    check_id: str
    passed: bool
    points: float
    max_points: float
    message: str

    @property
    def group(self) -> str:
        return self.check_id.split("/", 1)[0]

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        del record["check_id"]
        return record


@dataclass(frozen=True)
class CellGrade:
    """One cell of the student's submission in the gradebook, as tdkit and the TA left it.

    ``kind``: "auto" (a test cell tdkit scores, a TA may override it), "hand" (an answer a TA
    grades in formgrader) or "comment" (a cell with no points that the TA commented on).
    """

    cell: str
    kind: str
    max_points: float
    auto_points: float | None = None  # tdkit's; for an answer, 0 when left as released
    manual_points: float | None = None  # the TA's, from formgrader
    extra_credit: float = 0.0
    needs_grading: bool = False  # formgrader's queue: an answer not graded, or changed since
    comment: str | None = None  # the TA's comment on the cell

    @property
    def points(self) -> float:
        """nbgrader's score of the cell: the TA's when set, else tdkit's, plus extra credit."""
        given = self.manual_points if self.manual_points is not None else self.auto_points
        return (given or 0.0) + self.extra_credit

    @property
    def pending(self) -> bool:
        """An answer that no TA has graded yet (or whose text changed since it was graded)."""
        return self.kind == "hand" and (
            self.needs_grading or (self.manual_points is None and self.auto_points is None)
        )

    @property
    def overridden(self) -> bool:
        """A test cell whose automatic points a TA replaced."""
        return (
            self.kind == "auto"
            and self.manual_points is not None
            and self.manual_points != self.auto_points
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudentResult:
    student_id: str
    checks: list[CheckResult]
    seconds: float = 0.0  # wall time of the whole grading of this submission
    failure: str | None = None  # the run stopped early: timeout, dead kernel, unreadable notebook
    errors: list[CellError] = field(default_factory=list)  # cells that raised, with tracebacks
    # The assignment's figures (Assignment.figures): name -> {"student": values, "reference": values},
    # a curve (list) or a matrix (list of lists), on the same grader inputs.
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Manually graded cells (free-text answers): grade_id -> max points.
    manual: dict[str, float] = field(default_factory=dict)
    submitted_at: str | None = None  # ISO date of the submission (UTC); None: no timestamp, on time
    seconds_late: float = 0.0  # past the student's due date (extension included)
    late_penalty: float = 0.0  # points taken off by the late-submission plugin
    group: str | None = None  # the student's group (binôme), if any
    graded_with: str | None = (
        None  # the group member whose notebook was graded, when not this student
    )
    # Modules the notebook imported from outside the course environment (td-requirements.txt).
    missing_modules: list[str] = field(default_factory=list)
    refused: bool = False  # never run (unreadable, not the TD): ``failure`` says why
    notice: str | None = None  # what is wrong with the notebook as a whole (the release unchanged)
    # What it was graded from: {"submission": digest, "grader": {part: digest}} (tdkit.trusted.incremental).
    fingerprint: dict[str, Any] = field(default_factory=dict)
    grader_failure: bool = (
        False  # failed on the grader's side, not the student's: graded again next time
    )
    # The gradebook's cells (tdkit.trusted.course_grade): the course's grade is read from them.
    cells: list[CellGrade] = field(default_factory=list)
    # Digest of each hand-graded answer's text as graded: a new version's changed answer is flagged.
    answers: dict[str, str] = field(default_factory=dict)

    def _of(self, kind: str) -> list[CellGrade]:
        return [c for c in self.cells if c.kind == kind]

    @property
    def automatic(self) -> float:
        """The automatic points, with the TA's overrides (the checks' sum before any gradebook)."""
        auto = self._of("auto")
        return sum(c.points for c in auto) if auto else self.score

    @property
    def by_hand(self) -> float:
        """The points of the answers graded by a TA (an answer left as released counts 0)."""
        return sum(c.points for c in self._of("hand") if not c.pending)

    @property
    def hand_cells(self) -> list[CellGrade]:
        """The answers a TA grades in formgrader, as the gradebook holds them."""
        return self._of("hand")

    @property
    def hand_maximum(self) -> float:
        """What the answers graded by hand are worth together."""
        return sum(c.max_points for c in self.hand_cells)

    @property
    def maximum(self) -> float:
        """The assignment's total, nbgrader's maximum score: automatic and hand-graded cells."""
        graded = self._of("auto") + self._of("hand")
        return sum(c.max_points for c in graded) if graded else self.max_score

    @property
    def pending(self) -> list[str]:
        """The answers that wait for a TA: no final grade until they are graded."""
        return [c.cell for c in self._of("hand") if c.pending]

    @property
    def waiting_for(self) -> list[str]:
        """What the final grade waits for: the answers no TA has graded yet, and a grading to run
        again when it failed on the grader's side (never a grade for work nobody graded)."""
        return self.pending + (["tdkit grade"] if self.grader_failure else [])

    @property
    def overrides(self) -> list[CellGrade]:
        return [c for c in self._of("auto") if c.overridden]

    @property
    def graded_score(self) -> float:
        """Automatic points (overrides included) plus the hand grading, before the late penalty."""
        return self.automatic + self.by_hand

    @property
    def final_score(self) -> float:
        """The course's grade: automatic + by hand - late penalty, out of ``maximum``."""
        return max(0.0, self.graded_score - self.late_penalty)

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
            "figures": self.figures,
            "manual": self.manual,
            "submitted_at": self.submitted_at,
            "seconds_late": self.seconds_late,
            "late_penalty": self.late_penalty,
            "final_score": self.final_score,
            "group": self.group,
            "graded_with": self.graded_with,
            "missing_modules": self.missing_modules,
            # Only when set: most students have neither, and older results.json files lack them.
            **({"refused": True} if self.refused else {}),
            **({"notice": self.notice} if self.notice else {}),
            "fingerprint": self.fingerprint,
            "grader_failure": self.grader_failure,
            "automatic": self.automatic,
            "by_hand": self.by_hand,
            "maximum": self.maximum,
            "pending": self.pending,
            "cells": [c.to_json() for c in self.cells],
            "answers": self.answers,
        }

    @classmethod
    def from_json(cls, student_id: str, record: dict[str, Any]) -> StudentResult:
        return cls(
            student_id,
            [CheckResult(cid, **c) for cid, c in record["checks"].items()],
            seconds=float(record.get("seconds", 0.0)),
            failure=record.get("failure"),
            errors=[CellError(**e) for e in record.get("errors", [])],
            figures=record.get("figures", {}),
            manual=record.get("manual", {}),
            submitted_at=record.get("submitted_at"),
            seconds_late=float(record.get("seconds_late", 0.0)),
            late_penalty=float(record.get("late_penalty", 0.0)),
            group=record.get("group"),
            graded_with=record.get("graded_with"),
            missing_modules=record.get("missing_modules", []),
            refused=bool(record.get("refused", False)),
            notice=record.get("notice"),
            fingerprint=record.get("fingerprint", {}),
            grader_failure=bool(record.get("grader_failure", False)),
            cells=[CellGrade(**c) for c in record.get("cells", [])],
            answers=record.get("answers", {}),
        )


@dataclass
class AssignmentResults:
    assignment: str
    students: dict[str, StudentResult] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # group conflicts, one French line each
    environment: list[str] = field(default_factory=list)  # the declared packages graded against

    @property
    def without_timestamp(self) -> list[str]:
        """Students whose submission has no date: treated as on time."""
        return sorted(sid for sid, s in self.students.items() if s.submitted_at is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment,
            "students": {sid: self.students[sid].to_json() for sid in sorted(self.students)},
            "conflicts": self.conflicts,
            "environment": self.environment,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AssignmentResults:
        return cls(
            record["assignment"],
            {sid: StudentResult.from_json(sid, r) for sid, r in record["students"].items()},
            conflicts=record.get("conflicts", []),
            environment=record.get("environment", []),
        )


@dataclass(frozen=True)
class AnswerQueue:
    """The TA's queue for one hand-graded answer: whose copy is graded, waits, or changed since."""

    cell: str
    graded: list[str]
    waiting: list[str]  # never graded
    changed: list[str]  # graded, then handed in again with another text: to grade again


def hand_grading_queue(results: AssignmentResults) -> list[AnswerQueue]:
    """Per answer, the copies a TA grades in formgrader (a group's once, under its graded member)."""
    by_cell: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for sid in sorted(results.students):
        student = results.students[sid]
        if student.graded_with:
            continue
        for cell in student.cells:
            if cell.kind != "hand":
                continue
            graded, waiting, changed = by_cell.setdefault(cell.cell, ([], [], []))
            if not cell.pending:
                graded.append(sid)
            elif cell.manual_points is not None:
                changed.append(sid)
            else:
                waiting.append(sid)
    return [AnswerQueue(cell, *lists) for cell, lists in sorted(by_cell.items())]


def write_results_json(results: AssignmentResults, path: Path) -> None:
    write_atomically(
        path, json.dumps(results.to_json(), ensure_ascii=False, indent=1, allow_nan=False) + "\n"
    )


def read_results_json(path: Path) -> AssignmentResults:
    return AssignmentResults.from_json(json.loads(path.read_text(encoding="utf-8")))


def write_grades_csv(results: AssignmentResults, path: Path) -> None:
    """One row per student: the automatic checks' score, lateness, then the course's grade (automatic
    with overrides, by hand, maximum); ``final_score`` stays empty while answers wait for a TA."""
    from io import StringIO

    buffer = StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "student_id",
            "assignment",
            "auto_score",
            "auto_max_score",
            "failed_checks",
            "failure",
            "submitted_at",
            "seconds_late",
            "late_penalty",
            "final_score",
            "group",
            "graded_with",
            "automatic",
            "by_hand",
            "maximum",
            "pending",
        ]
    )
    for sid in sorted(results.students):
        student = results.students[sid]
        failed = sum(not c.passed for c in student.checks)
        writer.writerow(
            [
                sid,
                results.assignment,
                f"{student.score:g}",
                f"{student.max_score:g}",
                failed,
                student.failure or "",
                student.submitted_at or "",
                f"{student.seconds_late:.0f}",
                f"{student.late_penalty:g}",
                "" if student.waiting_for else f"{student.final_score:g}",
                student.group or "",
                student.graded_with or "",
                f"{student.automatic:g}",
                f"{student.by_hand:g}",
                f"{student.maximum:g}",
                " ".join(student.pending),
            ]
        )
    write_atomically(path, buffer.getvalue())
