"""Moodle's offline grading worksheet ("Download grading worksheet" / "Upload grading worksheet").

The format, from Moodle's own source:
- ``mod/assign/gradingtable.php`` builds the columns: ``Identifier`` ("Participant NNNN", the
  number Moodle also puts in the submissions zip, ``..._NNNN_assignsubmission_file_``),
  ``Full name``, the identity fields (``ID number``, ``Email address``...), ``Status``, ``Group``
  (group submissions), ``Marker``, ``Grade``, ``Maximum Grade``, ``Marking workflow state``,
  ``Grade can be changed``, ``Last modified (submission)``, ``Online text``...,
  ``Last modified (grade)``, then the feedback plugins' fields (``Feedback comments``). Which of
  them are present depends on the assignment's settings, so columns are found by name, never
  by position. Names are the grader's Moodle language: English and French are read.
- ``dataformat/csv`` writes it with OpenSpout: a UTF-8 BOM, commas, PHP's ``fputcsv`` quoting
  (a field is quoted when it holds the delimiter, a quote, a newline, a tab or a space), and
  ``\\n`` line ends. Dates are ``userdate()``: "Tuesday, 3 December 2024, 2:05 PM" in English
  (``strftimedaydatetime``), "mardi 3 décembre 2024, 14:05" in French; '-' when there is none.
- ``feedback/offline/importgradeslib.php`` reads it back and needs the same header: it finds
  ``Identifier``, ``Grade`` and ``Last modified (grade)`` by name and strips the BOM.

A worksheet is written back as read (header, column order, BOM, delimiter, line ends, every
other cell), with only ``Grade`` and ``Feedback comments`` filled.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tdkit.core.errors import TdkitError

BOM = "\ufeff"
MAX_WORKSHEET_BYTES = 20 * 1024 * 1024  # thousands of students are far below this

# Column key -> its header in each language Moodle may write (English, French).
COLUMNS = {
    "identifier": ("Identifier", "Identifiant"),
    "full_name": ("Full name", "Nom complet"),
    "email": ("Email address", "Adresse de courriel"),
    "group": ("Group", "Groupe"),
    "grade": ("Grade", "Note"),
    "max_grade": ("Maximum Grade", "Note maximale"),
    "submitted": ("Last modified (submission)", "Dernière modification (travail remis)"),
    "graded": ("Last modified (grade)", "Dernière modification (note)"),
    "feedback": ("Feedback comments", "Feedback par commentaires"),
}
# Group-column values that mean "no group" (defaultteam, noteamgrader) or "several" (multipleteamsgrader).
NO_GROUP = {
    "Default group",
    "Groupe par défaut",
    "Not a member of any group, so unable to make submissions.",
}
SEVERAL_GROUPS = {"Member of more than one group, so unable to make submissions."}

MONTHS = {
    **{
        m: i
        for i, m in enumerate(
            (
                "january",
                "february",
                "march",
                "april",
                "may",
                "june",
                "july",
                "august",
                "september",
                "october",
                "november",
                "december",
            ),
            1,
        )
    },
    **{
        m: i
        for i, m in enumerate(
            (
                "janvier",
                "février",
                "mars",
                "avril",
                "mai",
                "juin",
                "juillet",
                "août",
                "septembre",
                "octobre",
                "novembre",
                "décembre",
            ),
            1,
        )
    },
}
# "Tuesday, 3 December 2024, 2:05 PM" / "mardi 3 décembre 2024, 14:05"
MOODLE_DATE = re.compile(
    r"(?:\w+,?\s+)?(?P<day>\d{1,2})\s+(?P<month>\w+)\s+(?P<year>\d{4}),\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?:\s*(?P<ampm>[AaPp][Mm]))?"
)
PARTICIPANT = re.compile(r"\D*?(\d+)\s*")


@dataclass(frozen=True)
class Participant:
    """One row of the worksheet."""

    participant_id: str  # Moodle's "Participant NNNN" number: the student id in tdkit
    full_name: str
    email: str
    group: str | None  # None: no group column, or not in a group
    in_several_groups: bool  # Moodle says the student is in more than one group
    submitted_at: datetime | None  # aware, in the course's time zone; None: no submission date


@dataclass(frozen=True)
class Worksheet:
    name: str  # the file name Moodle gave it
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    bom: bool
    delimiter: str
    newline: str

    def column(self, key: str) -> int | None:
        """Index of a column by its key in COLUMNS, whatever the language; None if absent."""
        for index, name in enumerate(self.header):
            if name in COLUMNS[key]:
                return index
        return None

    def require(self, key: str, why: str) -> int:
        index = self.column(key)
        if index is None:
            raise TdkitError(
                f"{self.name}: no {COLUMNS[key][0]!r} column ({why}); download the grading worksheet again "
                "from the assignment (Grading action > Download grading worksheet)."
            )
        return index

    def participant_id(self, row: tuple[str, ...]) -> str | None:
        match = PARTICIPANT.fullmatch(row[self.require("identifier", "it names each student")])
        return str(int(match[1])) if match else None

    def participants(self, zone: ZoneInfo) -> list[Participant]:
        """Every student row; a date Moodle did not write ('-', empty) is None, a date it could not
        have written is an error naming the row."""
        found = []
        cells = {key: self.column(key) for key in COLUMNS}
        for number, row in enumerate(self.rows, 2):
            pid = self.participant_id(row)
            if pid is None:
                raise TdkitError(
                    f"{self.name}, line {number}: {row[cells['identifier'] or 0]!r} is not a Moodle identifier "
                    "('Participant NNNN'); download the grading worksheet again."
                )

            def cell(key: str, row: tuple[str, ...] = row) -> str:
                index = cells[key]
                return row[index].strip() if index is not None else ""

            group = cell("group")
            found.append(
                Participant(
                    participant_id=pid,
                    full_name=cell("full_name"),
                    email=cell("email"),
                    group=None
                    if group in NO_GROUP or group in SEVERAL_GROUPS or not group
                    else group,
                    in_several_groups=group in SEVERAL_GROUPS,
                    submitted_at=parse_moodle_date(
                        cell("submitted"), zone, f"{self.name}, line {number}"
                    ),
                )
            )
        return found

    def with_cells(self, values: dict[str, dict[str, str]]) -> Worksheet:
        """A copy with cells replaced: participant id -> {column key: text}."""
        rows = []
        for row in self.rows:
            cells = list(row)
            for key, text in values.get(self.participant_id(row) or "", {}).items():
                cells[self.require(key, "tdkit fills it")] = text
            rows.append(tuple(cells))
        return replace(self, rows=tuple(rows))

    def to_bytes(self) -> bytes:
        lines = [
            _php_csv_row(self.header, self.delimiter),
            *(_php_csv_row(r, self.delimiter) for r in self.rows),
        ]
        text = "".join(line + self.newline for line in lines)
        return ((BOM if self.bom else "") + text).encode("utf-8")


def _php_csv_row(fields: tuple[str, ...], delimiter: str) -> str:
    """One line as PHP's fputcsv writes it (enclosure '"', no escape character)."""
    special = (delimiter, '"', "\n", "\r", "\t", " ")
    return delimiter.join(
        '"' + field.replace('"', '""') + '"' if any(c in field for c in special) else field
        for field in fields
    )


def parse_moodle_date(text: str, zone: ZoneInfo, where: str) -> datetime | None:
    """A ``userdate()`` text in ``zone``; None for '-' or an empty cell."""
    if text in ("", "-"):
        return None
    match = MOODLE_DATE.fullmatch(text.strip())
    month = MONTHS.get(match["month"].lower()) if match else None
    if match is None or month is None:
        raise TdkitError(
            f"{where}: {text!r} is not a date as Moodle writes it (e.g. 'Tuesday, 3 December 2024, 2:05 PM' or "
            "'mardi 3 décembre 2024, 14:05'); download the grading worksheet again without editing its dates."
        )
    hour = int(match["hour"])
    if match["ampm"]:
        hour = hour % 12 + (12 if match["ampm"].upper() == "PM" else 0)
    try:
        return datetime(
            int(match["year"]), month, int(match["day"]), hour, int(match["minute"]), tzinfo=zone
        )
    except ValueError as error:  # « 31 février », « 24:30 »: Moodle never wrote it
        raise TdkitError(
            f"{where}: {text!r} is not a date of the calendar ({error}); download the grading worksheet "
            "again without editing its dates."
        ) from None


def format_moodle_date(moment: datetime) -> str:
    """As an English Moodle's ``userdate()`` writes it: 'Tuesday, 3 December 2024, 2:05 PM'."""
    hour = moment.hour % 12 or 12
    return f"{moment:%A}, {moment.day} {moment:%B %Y}, {hour}:{moment:%M} {'PM' if moment.hour >= 12 else 'AM'}"


def read_worksheet(path: Path) -> Worksheet:
    """Read a worksheet as Moodle wrote it, or as a spreadsheet saved it again (BOM or not, ',' ';' or tab)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_WORKSHEET_BYTES + 1)
    except OSError as error:
        raise TdkitError(
            f"Cannot read the grading worksheet {path} ({error.strerror}): give the CSV downloaded from "
            "Moodle (Grading action > Download grading worksheet)."
        ) from None
    if len(data) > MAX_WORKSHEET_BYTES:
        raise TdkitError(
            f"{path} is larger than {MAX_WORKSHEET_BYTES} bytes: this is not a grading worksheet."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TdkitError(
            f"{path} is not UTF-8 text: save it again as 'CSV UTF-8', or download it again from Moodle."
        ) from None
    bom = text.startswith(BOM)
    text = text.removeprefix(BOM)
    first = text.split("\n", 1)[0]
    newline = "\r\n" if first.endswith("\r") else "\n"
    delimiter = max((",", ";", "\t"), key=first.count)
    try:
        rows = [
            tuple(r)
            for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
            if r
        ]
    except csv.Error as error:
        raise TdkitError(
            f"{path} is not a readable CSV ({error}): download the grading worksheet again."
        ) from None
    if not rows:
        raise TdkitError(f"{path} is empty: download the grading worksheet again.")
    sheet = Worksheet(path.name, rows[0], tuple(rows[1:]), bom, delimiter, newline)
    sheet.require("identifier", "it names each student")
    if not sheet.rows:  # taken as a class of nobody, it would drop every pair
        raise TdkitError(
            f"{path} has its header and no student row: download the grading worksheet again "
            "(Grading action > Download grading worksheet, with every participant shown)."
        )
    width = len(sheet.header)
    for number, row in enumerate(sheet.rows, 2):
        if len(row) != width:
            raise TdkitError(
                f"{path.name}, line {number}: {len(row)} cells for {width} columns; download the grading worksheet again."
            )
    return sheet
