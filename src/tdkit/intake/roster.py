"""Who is in the class and who works with whom: the Moodle worksheet's students and the pairs.

Groups (binômes) come from the worksheet's ``Group`` column (Moodle group submissions) or from a
``groups.csv`` (columns ``group`` and ``student_id``, one row per member). A group's notebook is
graded once, under the member whose folder holds it, and the result goes to every member
(``tdkit.trusted.fanout``). What cannot be decided is a conflict, reported with every candidate and
never settled by tdkit: a student in two groups is graded alone, on their own notebook; two
different notebooks in one group are each graded for their author alone.

``tdkit collect`` saves the roster and the worksheet as downloaded in ``moodle/<assignment>/``;
``tdkit grade`` and ``tdkit export moodle`` read them there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

from tdkit.core.course import Course, in_process_alembic_head
from tdkit.core.errors import TdkitError
from tdkit.core.files import write_atomically
from tdkit.core.json_files import read_checked_json
from tdkit.core.student_ids import could_mean, spelled_as_moodle
from tdkit.core.transaction import one_transaction
from tdkit.intake.worksheet import Participant

MAX_GROUPS_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Conflict:
    kind: str  # "two_notebooks" (one group, different notebooks) or "several_groups" (one student)
    subject: str  # the group, or the student
    candidates: tuple[str, ...]  # both (all) sides: student ids with their notebook, or group names

    def describe(self) -> str:
        """One line for the instructor (collect output)."""
        both = " / ".join(self.candidates)
        if self.kind == "two_notebooks":
            return (
                f"group {self.subject!r}: different notebooks from {both}; each is graded for its author only. "
                "Keep one (remove the other from submitted/) or fix the groups, then grade again"
            )
        return (
            f"student {self.subject}: in several groups ({both}); graded alone on their own notebook. "
            "Fix the groups in Moodle or groups.csv, then collect again"
        )

    def describe_fr(self) -> str:
        """The same, for the class summary (French)."""
        both = " / ".join(self.candidates)
        if self.kind == "two_notebooks":
            return f"Groupe « {self.subject} » : notebooks différents ({both}) ; chacun est noté pour son auteur seul."
        return f"Étudiant {self.subject} : dans plusieurs groupes ({both}) ; noté seul, sur son propre notebook."


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...]
    graded: (
        str | None
    )  # the member whose notebook is graded for the whole group; None: none or a conflict


@dataclass
class Roster:
    participants: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # worksheet rows by student id
    groups: list[Group] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    worksheet: str | None = None  # the worksheet's file name, saved beside the roster

    def group_of(self, student_id: str) -> Group | None:
        return next((g for g in self.groups if student_id in g.members), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "participants": self.participants,
            "groups": [asdict(g) for g in self.groups],
            "conflicts": [asdict(c) for c in self.conflicts],
            "worksheet": self.worksheet,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Roster:
        return cls(
            participants=record.get("participants", {}),
            groups=[
                Group(g["name"], tuple(g["members"]), g["graded"]) for g in record.get("groups", [])
            ],
            conflicts=[
                Conflict(c["kind"], c["subject"], tuple(c["candidates"]))
                for c in record.get("conflicts", [])
            ],
            worksheet=record.get("worksheet"),
        )


def roster_dir(course: Course) -> Path:
    return course.root / "moodle" / course.assignment


def save_roster(course: Course, roster: Roster, worksheet_bytes: bytes | None) -> None:
    folder = roster_dir(course)
    if worksheet_bytes is not None and roster.worksheet:
        write_atomically(folder / roster.worksheet, worksheet_bytes)
    write_atomically(
        folder / "roster.json", json.dumps(roster.to_json(), ensure_ascii=False, indent=1) + "\n"
    )


_TEXT_OR_NULL = {"type": ["string", "null"]}
# What ``Roster.to_json`` writes: every key, so that ``{}`` is a damaged roster, never a class of nobody.
ROSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["participants", "groups", "conflicts", "worksheet"],
    "properties": {
        "participants": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    key: _TEXT_OR_NULL for key in ("full_name", "email", "group", "submitted_at")
                },
            },
        },
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "members", "graded"],
                "properties": {
                    "name": {"type": "string"},
                    "members": {"type": "array", "items": {"type": "string"}},
                    "graded": _TEXT_OR_NULL,
                },
            },
        },
        "conflicts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "subject", "candidates"],
                "properties": {
                    "kind": {"enum": ["two_notebooks", "several_groups"]},
                    "subject": {"type": "string"},
                    "candidates": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "worksheet": _TEXT_OR_NULL,
    },
}


def load_roster(course: Course) -> Roster:
    """The roster saved by the last ``tdkit collect``; empty (nobody in a group) when there is none."""
    path = roster_dir(course) / "roster.json"
    if not path.is_file():
        return Roster()
    fix = (
        "run 'tdkit collect ARCHIVE.zip --worksheet WORKSHEET.csv [--groups groups.csv]' again, "
        "which writes it anew (nothing else is lost)"
    )
    return Roster.from_json(read_checked_json(path, ROSTER_SCHEMA, fix))


def participant_record(p: Participant) -> dict[str, Any]:
    submitted: datetime | None = p.submitted_at
    return {
        "full_name": p.full_name,
        "email": p.email,
        "group": p.group,
        "submitted_at": submitted.isoformat() if submitted else None,
    }


def read_groups_csv(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(group, student id) rows of a groups.csv, columns found by name; and notes on how ids were
    read (Moodle's « Participant NNNN » is NNNN)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_GROUPS_BYTES + 1)
        text = data.decode("utf-8-sig")
    except OSError as error:
        raise TdkitError(
            f"Cannot read {path} ({error.strerror}): give a CSV with columns group,student_id."
        ) from None
    except UnicodeDecodeError:
        raise TdkitError(f"{path} is not UTF-8 text: save it again as 'CSV UTF-8'.") from None
    if len(data) > MAX_GROUPS_BYTES:
        raise TdkitError(
            f"{path} is larger than {MAX_GROUPS_BYTES} bytes: this is not a list of groups."
        )
    delimiter = max((",", ";", "\t"), key=text.split("\n", 1)[0].count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames or not {"group", "student_id"} <= {
        f.strip() for f in reader.fieldnames
    }:
        raise TdkitError(
            f"{path}: the header must name the columns 'group' and 'student_id' (one row per member)."
        )
    rows = []
    notes = []
    for number, row in enumerate(reader, 2):
        group, text = (row.get(key) or "" for key in ("group", "student_id"))
        if not group.strip() or not text.strip():
            raise TdkitError(f"{path}, line {number}: both 'group' and 'student_id' are needed.")
        sid, note = spelled_as_moodle(text, f"{path.name}, line {number}")
        notes += [note] if note else []
        rows.append((group.strip(), sid))
    return rows, notes


def check_members(path: Path, rows: list[tuple[str, str]], known: set[str]) -> None:
    """Every member of groups.csv is a student of the worksheet: a typo never leaves a pair unformed."""
    for group, sid in rows:
        if sid not in known:
            raise TdkitError(
                f"{path}: student {sid!r} (group {group!r}) is not in the grading worksheet: "
                f"{could_mean(sid, known)} Fix the id in {path.name} (Moodle's « Participant NNNN » "
                "number), then collect again."
            )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plan_groups(
    memberships: list[tuple[str, str, str]], notebooks: dict[str, tuple[bytes, str]]
) -> tuple[list[Group], list[Conflict], dict[str, str]]:
    """Groups, conflicts, and the members whose notebook is a copy of the one graded for their group.

    ``memberships``: (group, student id, where it was read); ``notebooks``: student id -> (content,
    where it comes from). Returns (groups, conflicts, copies: student id -> the member graded instead).
    """
    groups_of: dict[str, dict[str, str]] = {}
    for group, sid, source in memberships:
        groups_of.setdefault(sid, {}).setdefault(group, source)
    conflicts = [
        Conflict("several_groups", sid, tuple(f"{g} ({src})" for g, src in sorted(found.items())))
        for sid, found in sorted(groups_of.items())
        if len(found) > 1
    ]
    alone = {c.subject for c in conflicts}
    members: dict[str, list[str]] = {}
    for sid, found in groups_of.items():
        if sid not in alone:
            members.setdefault(next(iter(found)), []).append(sid)
    groups: list[Group] = []
    copies: dict[str, str] = {}
    for name in sorted(members):
        ids = sorted(members[name], key=id_order)
        submitted = [sid for sid in ids if sid in notebooks]
        versions = {_digest(notebooks[sid][0]) for sid in submitted}
        graded = submitted[0] if len(versions) == 1 else None
        if len(versions) > 1:
            candidates = tuple(f"{sid} ({notebooks[sid][1]})" for sid in submitted)
            conflicts.append(Conflict("two_notebooks", name, candidates))
        if graded is not None:
            copies.update({sid: graded for sid in submitted[1:]})
        groups.append(Group(name, tuple(ids), graded))
    return groups, conflicts, copies


def id_order(student_id: str) -> tuple[int, int, str]:
    return (0, int(student_id), "") if student_id.isdigit() else (1, 0, student_id)


def record_students(course: Course, students: list[tuple[str, str, str]]) -> None:
    """Names and e-mails of (student id, full name, e-mail), in one transaction, for formgrader and exports.

    Moodle gives one full name: its first word is the first name, the rest the last name."""
    in_process_alembic_head()
    with warnings.catch_warnings(), Gradebook(course.db_url, course.course_id) as gb:
        warnings.simplefilter("ignore", SAWarning)
        with one_transaction(gb):
            for student_id, full_name, email in students:
                first, _, last = inert_name(full_name).partition(" ")
                gb.update_or_create_student(
                    student_id,
                    first_name=first or None,
                    last_name=last or None,
                    email=inert_email(email),
                )


EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def inert_name(text: str) -> str:
    """A name as formgrader may show it: letters, marks, spaces, hyphens, dots and apostrophes only.

    Names come from the LMS, where students can often edit their own, and formgrader inserts them
    into its pages unescaped: no character of markup may reach it (the ASCII quote becomes ’)."""
    kept = "".join(
        ch if unicodedata.category(ch)[0] in "LM" or ch in " -.’" else "’" if ch == "'" else " "
        for ch in text
    )
    return " ".join(kept.split())


def inert_email(text: str) -> str | None:
    """The address when it is a plain e-mail address, else None (nothing else reaches formgrader)."""
    return text if EMAIL.fullmatch(text) else None
