"""``tdkit collect``: take one notebook per student from an LMS export zip into nbgrader's
``submitted/<student_id>/<assignment>/<assignment>.ipynb``.

The archive is untrusted. Names are checked ('..', absolute paths, links), sizes are bounded
by reading rather than by trusting headers, and the only paths written are built from a
checked student id. When in doubt (two notebooks, one id for two people) the student is
rejected and reported, never guessed; a submission already collected is never replaced
silently.

Layouts understood, one student per top-level folder or file:
- Moodle folders: ``Full Name_12345_assignsubmission_file_/<assignment>.ipynb`` (id 12345)
- Moodle flat files: ``Full Name_12345_assignsubmission_file_<assignment>.ipynb``
- flat files: ``12345_<any name>.ipynb`` or ``<student_id>_<assignment>.ipynb``
- plain folders: ``<student_id>/<assignment>.ipynb``

Beside the zip, Moodle's grading worksheet (``tdkit.intake.worksheet``) brings names, e-mails, submission
dates and groups; pairs and their conflicts are planned by ``tdkit.intake.roster``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import lzma
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from tdkit.core.config import limits_from_config
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.core.files import write_atomically
from tdkit.core.gradebook_file import check_gradebook
from tdkit.intake.late import course_timezone, nbgrader_timestamp
from tdkit.intake.roster import (
    Conflict,
    Roster,
    check_members,
    id_order,
    participant_record,
    plan_groups,
    read_groups_csv,
    record_students,
    save_roster,
)
from tdkit.intake.worksheet import Participant, read_worksheet

MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024  # all notebooks of one archive, uncompressed
MAX_ENTRIES = 50_000  # a class of a few hundred students is far below this

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MOODLE_FOLDER = re.compile(r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z0-9]+)_?")
MOODLE_FILE = re.compile(
    r"(?P<name>.+)_(?P<id>\d+)_assignsubmission_(?P<plugin>[A-Za-z0-9]+)_(?P<file>.+)"
)
NUMBERED_FILE = re.compile(r"(?P<id>\d+)_(?P<file>.+)")
# Files and folders that operating systems and Jupyter add on their own: never a submission.
JUNK_PARTS = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "desktop.ini"}
UTF8_NAME_FLAG = 0x800
ENCRYPTED_FLAG = 0x1
# What a damaged archive can raise while being read: zipfile does not wrap these
# (ValueError covers an undecodable name in a local header, NotImplementedError a bad version).
READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    OSError,
    ValueError,
    OverflowError,
)


class Status(str, enum.Enum):
    TAKEN = "taken"  # written, no submission there before
    REPLACED = "replaced"  # written over a different submission, with --force
    UNCHANGED = "unchanged"  # the same notebook was already collected
    SKIPPED = "skipped"  # a different notebook was already collected; --force replaces it
    REJECTED = "rejected"  # nothing written; the reason says why
    GROUPED = "grouped"  # nothing written: the same notebook as a group partner's, graded once for the group
    MISSING = "missing"  # in the grading worksheet, nothing in the archive


@dataclass(frozen=True)
class Outcome:
    """What happened to one student (or, when no student can be read from it, to one entry)."""

    student: str  # the student id, or the archive entry when no safe id could be read
    status: Status
    reason: str = ""  # why it was rejected or skipped
    entry: str = ""  # the archive entry of the notebook
    renamed_from: str = ""  # the student's file name, when it was not <assignment>.ipynb
    target: Path | None = None  # where the notebook is in submitted/
    ignored: tuple[str, ...] = ()  # other files of the student, not collected
    timestamp: str | None = None  # what was written to timestamp.txt, from the grading worksheet

    def describe(self) -> str:
        """One line for the instructor."""
        if self.status is Status.REJECTED:
            return f"{self.student}: rejected: {self.reason}"
        if self.status in (Status.SKIPPED, Status.GROUPED, Status.MISSING):
            return f"{self.student}: {self.status.value}: {self.reason}"
        text = f"{self.student}: {self.status.value} {self.entry!r}"
        if self.status is Status.REPLACED:
            text += " (--force)"
        if self.status is Status.UNCHANGED:
            text += " (already collected, same content)"
        if self.renamed_from and self.target is not None:
            text += f", renamed {self.renamed_from!r} -> {self.target.name}"
        if self.ignored:
            text += f"; ignored {', '.join(repr(name) for name in self.ignored)}"
        if self.timestamp:
            text += f"; submitted {self.timestamp}"
        return text


@dataclass(frozen=True)
class CollectReport:
    archive: Path
    submitted: Path
    outcomes: tuple[Outcome, ...]
    roster: Roster = field(
        default_factory=Roster
    )  # students of the worksheet, groups and their conflicts
    notes: tuple[str, ...] = ()  # how the instructor's files were read (« Participant NNNN » ids)

    def _with(self, *statuses: Status) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def taken(self) -> list[Outcome]:
        """Notebooks written by this run (new or replaced with --force)."""
        return self._with(Status.TAKEN, Status.REPLACED)

    @property
    def renamed(self) -> list[Outcome]:
        """Notebooks written by this run under a name other than the student's."""
        return [o for o in self.taken if o.renamed_from]

    @property
    def unchanged(self) -> list[Outcome]:
        return self._with(Status.UNCHANGED)

    @property
    def skipped(self) -> list[Outcome]:
        return self._with(Status.SKIPPED)

    @property
    def rejected(self) -> list[Outcome]:
        return self._with(Status.REJECTED)

    @property
    def missing(self) -> list[Outcome]:
        """Students of the grading worksheet with no submission in the archive (nor a group's)."""
        return self._with(Status.MISSING)

    def lines(self) -> list[str]:
        lines = [*self.notes, *(o.describe() for o in self.outcomes)]
        known = self.roster.participants
        if known:
            strangers = [o.student for o in self.taken + self.unchanged if o.student not in known]
            lines += [
                f"{sid}: not in the grading worksheet: Moodle will not get a grade for it"
                for sid in strangers
            ]
        lines += [f"conflict: {c.describe()}" for c in self.roster.conflicts]
        return lines

    def summary(self) -> str:
        counts = {status: len(self._with(status)) for status in Status}
        return (
            f"{self.archive.name}: {counts[Status.TAKEN]} taken ({len(self.renamed)} renamed), "
            f"{counts[Status.REPLACED]} replaced, {counts[Status.UNCHANGED]} unchanged, "
            f"{counts[Status.SKIPPED]} skipped, {counts[Status.REJECTED]} rejected; "
            f"submissions are in {self.submitted}"
            + (f"; {counts[Status.GROUPED]} grouped" if counts[Status.GROUPED] else "")
            + (f"; {counts[Status.MISSING]} missing" if self.roster.participants else "")
            + (f"; {len(self.roster.conflicts)} group conflict(s)" if self.roster.conflicts else "")
        )


@dataclass
class _Student:
    """Everything the archive holds for one student id."""

    student_id: str
    sources: dict[str, str] = field(default_factory=dict)  # who submitted -> top-level name
    # (entry, its name in the archive, the file name the student gave it)
    notebooks: list[tuple[zipfile.ZipInfo, str, str]] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Budget:
    left: int  # bytes the remaining notebooks of the archive may still take, uncompressed


def collect(
    course: Course,
    archive: Path,
    *,
    force: bool = False,
    worksheet: Path | None = None,
    groups: Path | None = None,
    max_notebook_bytes: int | None = None,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> CollectReport:
    """Copy each student's notebook from ``archive`` to ``submitted/<id>/<assignment>/`` (the
    course's assignment).

    With Moodle's grading ``worksheet``: each submission's date goes to its timestamp.txt (where
    nbgrader reads it), names and e-mails to the gradebook, and students without a submission
    are listed as missing. Groups come from the worksheet's Group column or ``groups``.
    A bad or ambiguous submission is rejected and reported, and the others are collected;
    an archive (or worksheet) that cannot be read at all raises TdkitError.
    """
    assignment = course.assignment
    if not SAFE_ID.fullmatch(assignment):
        raise TdkitError(
            f"Assignment name {assignment!r} is not a safe folder name: use letters, digits, '-', '_', '.'."
        )
    archive = Path(archive)
    if (
        max_notebook_bytes is None
    ):  # the limit grading applies: nothing collected is refused later for its size
        max_notebook_bytes = limits_from_config(course.nbgrader_config()).max_notebook_bytes
    sheet = read_worksheet(Path(worksheet)) if worksheet is not None else None
    zone = course_timezone(course.nbgrader_config()) if sheet is not None else None
    participants = {p.participant_id: p for p in sheet.participants(zone)} if sheet and zone else {}
    memberships = [(p.group, sid, "Moodle") for sid, p in participants.items() if p.group]
    group_rows, notes = read_groups_csv(Path(groups)) if groups is not None else ([], [])
    if groups is not None and participants:
        check_members(Path(groups), group_rows, set(participants))
    groups_name = Path(groups).name if groups is not None else ""
    memberships += [(g, sid, groups_name) for g, sid in group_rows]
    if sheet is not None:  # names go to the gradebook at the end: a locked one stops us now
        check_gradebook(course)
    students: dict[str, _Student] = {}
    loose: dict[str, Outcome] = {}  # rejections that belong to no student id
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise TdkitError(
            f"{archive} does not exist: give the path of the zip exported from the LMS."
        ) from None
    except READ_ERRORS as error:
        raise TdkitError(
            f"{archive} is not a readable zip archive ({error}): download the submissions from the LMS again."
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise TdkitError(
                f"{archive} has {len(infos)} entries (more than {MAX_ENTRIES}): this is not an LMS export of "
                "one assignment; export the submissions again."
            )
        for info in infos:
            _sort_entry(info, assignment, students, loose)
        budget = _Budget(max_total_bytes)
        reads = [
            _read_student(zf, student, assignment, max_notebook_bytes, budget)
            for student in sorted(students.values(), key=lambda s: id_order(s.student_id))
        ]
    notebooks = {r.student_id: (r.data, r.entry) for r in reads if isinstance(r, _Read)}
    planned, conflicts, copies = plan_groups(memberships, notebooks)
    if groups is not None and not participants:
        notes += _unseen_members(course, Path(groups), group_rows, set(notebooks))
    conflicts += [
        Conflict("several_groups", sid, ("Moodle: member of more than one group",))
        for sid, p in participants.items()
        if p.in_several_groups
    ]
    roster = Roster(
        {sid: participant_record(p) for sid, p in participants.items()},
        planned,
        conflicts,
        sheet.name if sheet else None,
    )
    outcomes = []
    for read in reads:
        if isinstance(read, Outcome):
            outcomes.append(read)
        elif read.student_id in copies:
            graded = copies[read.student_id]
            group = roster.group_of(graded)
            reason = f"same notebook as {graded} (group {group.name if group else '?'!r}), graded once for the group"
            outcomes.append(
                Outcome(read.student_id, Status.GROUPED, reason=reason, entry=read.entry)
            )
        else:
            outcomes.append(
                _stamped(
                    course, _store_student(course, read, assignment, force), participants, zone
                )
            )
    outcomes += _missing(participants, {o.student for o in outcomes}, roster)
    if sheet is not None:
        record_students(course, [(sid, p.full_name, p.email) for sid, p in participants.items()])
        save_roster(course, roster, Path(worksheet).read_bytes() if worksheet is not None else None)
    elif groups is not None:
        save_roster(course, roster, None)
    return CollectReport(
        archive=archive,
        submitted=course.submitted,
        outcomes=(*outcomes, *loose.values()),
        roster=roster,
        notes=tuple(notes),
    )


def _unseen_members(
    course: Course, groups: Path, rows: list[tuple[str, str]], in_archive: set[str]
) -> list[str]:
    """Without a worksheet, a member with no notebook anywhere may be a mistyped id: say so."""
    return [
        f"{groups.name}: student {sid} (group {group!r}) has no notebook in the archive nor in "
        f"{course.submitted}: check the id if they handed one in"
        for group, sid in rows
        if sid not in in_archive and not course.submitted_notebook(sid).is_file()
    ]


def _stamped(
    course: Course, outcome: Outcome, participants: dict[str, Participant], zone: ZoneInfo | None
) -> Outcome:
    """Write the worksheet's submission date to timestamp.txt beside a notebook collected now."""
    participant = participants.get(outcome.student)
    if (
        outcome.target is None
        or zone is None
        or participant is None
        or participant.submitted_at is None
    ):
        return outcome
    stamp = nbgrader_timestamp(participant.submitted_at, zone)
    _write_atomically(outcome.target.parent / "timestamp.txt", stamp.encode("utf-8"))
    return dataclasses.replace(outcome, timestamp=stamp)


def _missing(participants: dict[str, Participant], seen: set[str], roster: Roster) -> list[Outcome]:
    """Worksheet students with nothing in the archive and no group notebook graded for them."""
    missing = []
    for sid in sorted(set(participants) - seen, key=id_order):
        group = roster.group_of(sid)
        if group is not None and group.graded is not None:
            continue
        missing.append(
            Outcome(
                sid, Status.MISSING, reason="in the grading worksheet, no submission in the archive"
            )
        )
    return missing


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author meant it: without the UTF-8 flag, zipfile decodes names
    as cp437, but Windows and macOS tools often wrote UTF-8 bytes anyway."""
    name = info.filename
    if not info.flag_bits & UTF8_NAME_FLAG:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return name


def _is_absolute(name: str) -> bool:
    return name.startswith("/") or re.match(r"[A-Za-z]:(/|$)", name) is not None


def _unsafe(name: str, parts: list[str], info: zipfile.ZipInfo) -> str:
    """Why this entry must not be trusted, or '' when it is an ordinary file or folder."""
    if _is_absolute(name):
        return f"absolute path {name!r}"
    if ".." in parts:
        return f"'..' in path {name!r} (it would escape the folder)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"symbolic link {name!r}"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"special file {name!r}"
    if info.flag_bits & ENCRYPTED_FLAG:
        return f"encrypted entry {name!r}"
    return ""


def _owner(parts: list[str], is_folder: bool, assignment: str) -> tuple[str, str, str] | None:
    """(student id, who submitted, file name as submitted) for an entry, or None if unknown.

    "Who submitted" tells two people sharing an id apart from one person with two Moodle
    folders (one per submission plugin)."""
    top = parts[0]
    if len(parts) > 1 or is_folder:
        if match := MOODLE_FOLDER.fullmatch(top):
            return match["id"], f"moodle:{match['name']}", parts[-1]
        return top, "folder", parts[-1]
    if match := MOODLE_FILE.fullmatch(top):
        return match["id"], f"moodle:{match['name']}", match["file"]
    if match := NUMBERED_FILE.fullmatch(top):
        return match["id"], "file", match["file"]
    suffix = f"_{assignment}.ipynb"
    if top.endswith(suffix) and len(top) > len(suffix):
        return top[: -len(suffix)], "file", f"{assignment}.ipynb"
    return None


def _is_junk(part: str) -> bool:
    return part in JUNK_PARTS or part.startswith("._")


def _sort_entry(
    info: zipfile.ZipInfo, assignment: str, students: dict[str, _Student], loose: dict[str, Outcome]
) -> None:
    """File one archive entry under its student, or as a rejection of its own."""
    name = entry_name(info)
    # Some Windows tools write backslashes: treat them as separators so '..\\x' is caught too.
    normalised = name.replace("\\", "/")
    parts = [p for p in normalised.split("/") if p not in ("", ".")]
    if not parts or _is_junk(parts[0]):
        return
    problem = _unsafe(normalised, parts, info)
    is_folder = info.is_dir() or normalised.endswith("/")
    owner = (
        None
        if _is_absolute(normalised) or parts[0] == ".."
        else _owner(parts, is_folder, assignment)
    )
    if owner is None:
        reason = problem or (
            "cannot tell which student this is: expected 'Full Name_<id>_assignsubmission_file_/...', "
            f"'<id>/{assignment}.ipynb' or '<id>_{assignment}.ipynb'"
        )
        loose.setdefault(name, Outcome(student=repr(name), status=Status.REJECTED, reason=reason))
        return
    student_id, source, file_name = owner
    top_name = parts[0] + ("/" if len(parts) > 1 or is_folder else "")
    if not SAFE_ID.fullmatch(student_id):
        reason = (
            f"{student_id!r} is not a safe student id (letters, digits, '-', '_', '.'); "
            "rename it in the archive and collect again"
        )
        loose.setdefault(
            top_name, Outcome(student=repr(top_name), status=Status.REJECTED, reason=reason)
        )
        return
    student = students.setdefault(student_id, _Student(student_id))
    student.sources.setdefault(source, top_name)
    if problem:
        student.problems.append(problem)
    elif is_folder:
        return
    elif file_name.lower().endswith(".ipynb") and not any(_is_junk(p) for p in parts):
        student.notebooks.append((info, name, file_name))
    else:
        student.others.append(name)


@dataclass(frozen=True)
class _Read:
    """A student's notebook, read from the archive and not yet written."""

    student_id: str
    entry: str
    file_name: str
    ignored: tuple[str, ...]
    data: bytes


def _read_student(
    zf: zipfile.ZipFile,
    student: _Student,
    assignment: str,
    max_notebook_bytes: int,
    budget: _Budget,
) -> Outcome | _Read:
    sid = student.student_id
    by_hand = f"put the right notebook in submitted/{sid}/{assignment}/{assignment}.ipynb by hand"

    def rejected(reason: str) -> Outcome:
        return Outcome(student=sid, status=Status.REJECTED, reason=reason)

    if len(student.sources) > 1:
        where = ", ".join(repr(top) for top in student.sources.values())
        return rejected(
            f"student id {sid} appears in {len(student.sources)} submissions ({where}); none taken, {by_hand}"
        )
    if student.problems:
        return rejected(
            f"unsafe entry in the archive: {'; '.join(student.problems)}; nothing taken, check the archive"
        )
    if not student.notebooks:
        others = ", ".join(repr(name) for name in student.others)
        return rejected(
            f"no .ipynb notebook ({f'found only {others}' if others else 'empty submission'})"
        )
    if len(student.notebooks) > 1:
        names = ", ".join(repr(entry) for _, entry, _ in student.notebooks)
        return rejected(
            f"{len(student.notebooks)} notebooks ({names}); ask the student which one counts and {by_hand}"
        )

    info, entry, file_name = student.notebooks[0]
    limit = min(max_notebook_bytes, budget.left)
    which = (
        "the per-notebook limit"
        if limit == max_notebook_bytes
        else "what is left of the per-archive limit"
    )
    too_big = (
        f"notebook {entry!r} is larger than {which} ({limit} bytes); {by_hand} if it is genuine"
    )
    if info.file_size > limit:
        return rejected(too_big)
    try:
        # Bounded read: the size in the header is the archive's claim, not a fact.
        with zf.open(info) as stream:
            data = stream.read(limit + 1)
    except READ_ERRORS as error:
        return rejected(
            f"notebook {entry!r} cannot be read from the archive ({error}); export it again"
        )
    if len(data) > limit:
        return rejected(too_big)
    budget.left -= len(data)
    return _Read(sid, entry, file_name, tuple(student.others), data)


def _store_student(course: Course, read: _Read, assignment: str, force: bool) -> Outcome:
    sid, data = read.student_id, read.data
    target = course.submitted / sid / assignment / f"{assignment}.ipynb"
    renamed_from = "" if read.file_name == target.name else read.file_name
    written = Outcome(
        sid,
        Status.TAKEN,
        entry=read.entry,
        renamed_from=renamed_from,
        target=target,
        ignored=read.ignored,
    )
    submitted = os.path.realpath(course.submitted)
    if os.path.commonpath([submitted, os.path.realpath(target.parent)]) != submitted:
        return Outcome(
            sid,
            Status.REJECTED,
            reason=f"{target.parent} is a link out of {course.submitted}; remove it and collect again",
        )
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return Outcome(
            sid, Status.SKIPPED, reason=f"{target} is not a plain file; remove it, collect again"
        )
    if target.is_file():
        if target.read_bytes() == data:
            return dataclasses.replace(written, status=Status.UNCHANGED)
        if not force:
            return Outcome(sid, Status.SKIPPED, reason="already collected, differs; use --force")
        written = dataclasses.replace(written, status=Status.REPLACED)
    _write_atomically(target, data)
    return written


def _write_atomically(target: Path, data: bytes) -> None:
    """Readers of ``target`` see the old notebook or the new one, never half of one."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TdkitError(
            f"Cannot write in {target.parent} ({error.strerror}): fix its permissions and collect again."
        ) from None
    try:
        write_atomically(target, data)
    except OSError as error:
        raise TdkitError(
            f"Cannot write {target} ({error.strerror}): free disk space or fix permissions and collect again "
            "(submissions already collected will show as unchanged)."
        ) from None
