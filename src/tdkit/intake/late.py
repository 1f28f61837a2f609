"""Deadlines, extensions and late penalties, the nbgrader way.

The due date and the extensions are set in ``nbgrader_config.py`` (``c.TdkitDeadlines``, in the
course's time zone ``c.Exchange.timezone``); tdkit writes them where nbgrader keeps them (the
gradebook's ``Assignment.duedate`` and ``SubmittedAssignment.extension``), so nbgrader computes
the same lateness. The penalty comes from nbgrader's own plugin point,
``c.AssignLatePenalties.plugin_class``: nbgrader's ``LateSubmissionPlugin`` ('none' or 'zero'),
or ``tdkit.intake.late.LatePenalty`` (points per started day, zero after a cut-off).
A submission without a timestamp is on time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbgrader.plugins import BasePlugin, LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from nbgrader.utils import parse_utc
from traitlets import Dict, Float, Unicode
from traitlets.config import Config, Configurable

from tdkit.core.errors import TdkitError
from tdkit.core.settings import configured
from tdkit.core.student_ids import spelled_as_moodle

SECONDS_PER_DAY = 24 * 3600


class TdkitDeadlines(Configurable):
    """``c.TdkitDeadlines`` in nbgrader_config.py."""

    duedate = Unicode(
        None,
        allow_none=True,
        help="Due date of the assignment, 'YYYY-MM-DD HH:MM' in the course's time zone (c.Exchange.timezone).",
    ).tag(config=True)
    extensions = Dict(
        value_trait=Unicode(),
        help="Student id -> that student's own due date, same format as duedate.",
    ).tag(config=True)
    assignments = Dict(
        value_trait=Dict(),
        help="For a course of several assignments: assignment name -> {'duedate': ..., 'extensions': "
        "{...}}, as duedate and extensions above ({} for an assignment without a due date).",
    ).tag(config=True)


class LatePenalty(LateSubmissionPlugin):  # type: ignore[misc]  # nbgrader ships no types: its base class is Any
    """nbgrader's late-submission plugin with a penalty per started day and an optional cut-off."""

    points_per_day = Float(0.0, help="Points taken off per started day of lateness.").tag(
        config=True
    )
    zero_after_days = Float(
        None, allow_none=True, help="Later than this many days, the score is zero (None: never)."
    ).tag(config=True)

    def late_submission_penalty(
        self, student_id: str, score: float, total_seconds_late: float
    ) -> float | None:
        if self.penalty_method == "zero":
            return cast(
                "float | None",
                super().late_submission_penalty(student_id, score, total_seconds_late),
            )
        days = total_seconds_late / SECONDS_PER_DAY
        if self.zero_after_days is not None and days > self.zero_after_days:
            return score
        return self.points_per_day * math.ceil(days) if days > 0 else None


@dataclass(frozen=True)
class Deadlines:
    """A course's due date, extensions, time zone and late-penalty plugin."""

    timezone: ZoneInfo
    due: datetime | None  # aware
    extensions: dict[str, datetime]  # student id -> aware due date
    plugin: BasePlugin
    notes: tuple[
        str, ...
    ] = ()  # how a key was read (Moodle's « Participant NNNN »), for the instructor
    extensions_setting: str = "c.TdkitDeadlines.extensions"  # where they are set, for messages

    def due_for(self, student_id: str) -> datetime | None:
        return self.extensions.get(student_id, self.due)

    def extension(self, student_id: str) -> timedelta | None:
        """What nbgrader stores in ``SubmittedAssignment.extension``."""
        if self.due is None or student_id not in self.extensions:
            return None
        return self.extensions[student_id] - self.due

    def assess(self, student_id: str, timestamp: str | None, score: float) -> Lateness:
        """How late ``timestamp`` (nbgrader's timestamp.txt text) is, and the penalty on ``score``."""
        submitted = None if timestamp is None else parse_utc(timestamp).replace(tzinfo=timezone.utc)
        due = self.due_for(student_id)
        if submitted is None or due is None or submitted <= due:
            return Lateness(submitted, due, 0.0, 0.0)
        seconds = (submitted - due).total_seconds()
        return Lateness(submitted, due, seconds, self.penalty(student_id, seconds, score))

    def penalty(self, student_id: str, seconds_late: float, score: float) -> float:
        """The plugin's penalty on ``score`` for ``seconds_late`` past the due date."""
        if seconds_late <= 0:
            return 0.0
        penalty = self.plugin.late_submission_penalty(student_id, score, seconds_late)
        # As nbgrader's AssignLatePenalties: never below zero, never more than the score.
        return float(min(max(penalty or 0.0, 0.0), score))


@dataclass(frozen=True)
class Lateness:
    submitted: datetime | None  # aware UTC; None: no timestamp, treated as on time
    due: datetime | None  # the student's own due date (extension included)
    seconds_late: float
    penalty: float


def course_timezone(config: Config) -> ZoneInfo:
    """``c.Exchange.timezone`` (nbgrader's default: UTC)."""
    name = str(config.get("Exchange", {}).get("timezone", "UTC"))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TdkitError(
            f"nbgrader_config.py: c.Exchange.timezone = {name!r} is not a time zone; use an IANA name such as "
            "'Europe/Paris'."
        ) from None


def parse_local(text: str, zone: ZoneInfo, what: str) -> datetime:
    """'YYYY-MM-DD HH:MM[:SS]' in ``zone`` (or with an explicit offset) as an aware datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TdkitError(
            f"nbgrader_config.py: {what} = {text!r} is not a date; write it as 'YYYY-MM-DD HH:MM'."
        ) from None
    if ":" not in text:  # midnight is never guessed: on-time students would lose points
        day = text.strip()
        raise TdkitError(
            f"nbgrader_config.py: {what} = {text!r} has no time: write 'YYYY-MM-DD HH:MM', e.g. "
            f"'{day} 23:59' for the end of that day or '{day} 00:00' for its start."
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _check_keys(config: Config, section: str, configurable: type[Configurable]) -> None:
    valid = sorted(configurable.class_trait_names(config=True))
    unknown = sorted(set(config.get(section, {})) - set(valid))
    if unknown:
        raise TdkitError(
            f"nbgrader_config.py: unknown c.{section}.{', c.{section}.'.join(unknown)}; valid keys: {', '.join(valid)}."
        )


def deadlines_from_config(config: Config, assignment: str | None = None) -> Deadlines:
    """The deadlines of ``assignment`` in a course's config (``c.TdkitDeadlines.assignments`` for a
    course of several, else ``duedate`` and ``extensions``); an unknown key or a bad date is an
    error naming the fix."""
    _check_keys(config, "TdkitDeadlines", TdkitDeadlines)
    _check_keys(config, "LatePenalty", LatePenalty)
    zone = course_timezone(config)
    section = configured(TdkitDeadlines, config)
    duedate, given, name = _assignment_deadlines(section, assignment)
    if given and duedate is None:
        raise TdkitError(
            f"nbgrader_config.py: {name('extensions')} needs a due date ({name('duedate')}); set it."
        )
    due = None if duedate is None else parse_local(duedate, zone, name("duedate"))
    extensions, notes = _extensions(given, zone, name("extensions"))
    assigner = configured(AssignLatePenalties, config)
    plugin: Any = configured(LatePenalty, config, lambda: assigner.plugin_class(parent=assigner))
    _check_penalty(config, plugin)
    return Deadlines(zone, due, extensions, plugin, notes, name("extensions"))


def _assignment_deadlines(
    section: TdkitDeadlines, assignment: str | None
) -> tuple[str | None, dict[Any, str], Callable[[str], str]]:
    """The due date and extensions that apply to ``assignment``, and how the config names each
    setting, for messages. An assignment missing from a course's ``assignments`` is refused:
    another assignment's date never applies to it in silence."""
    if not section.assignments:
        return section.duedate, dict(section.extensions), lambda key: f"c.TdkitDeadlines.{key}"
    if section.duedate is not None or section.extensions:
        raise TdkitError(
            "nbgrader_config.py: c.TdkitDeadlines.assignments gives each assignment its deadlines: "
            "move c.TdkitDeadlines.duedate and .extensions into it, e.g. "
            "c.TdkitDeadlines.assignments = {'<assignment>': {'duedate': '2026-12-04 23:59'}}."
        )
    named = ", ".join(repr(a) for a in section.assignments)
    if assignment is None or assignment not in section.assignments:
        raise TdkitError(
            f"nbgrader_config.py: c.TdkitDeadlines.assignments has no entry for {assignment!r} "
            f"(it has {named}): add {{'{assignment}': {{'duedate': 'YYYY-MM-DD HH:MM'}}}}, or "
            f"{{'{assignment}': {{}}}} for an assignment without a due date."
        )
    entry = section.assignments[assignment]
    unknown = sorted(set(entry) - {"duedate", "extensions"})
    if unknown:
        raise TdkitError(
            f"nbgrader_config.py: c.TdkitDeadlines.assignments[{assignment!r}] has {unknown}: "
            "its keys are 'duedate' and 'extensions'."
        )
    duedate, extensions = entry.get("duedate"), entry.get("extensions", {})

    def name(key: str) -> str:
        return f"c.TdkitDeadlines.assignments[{assignment!r}][{key!r}]"

    if duedate is not None and not isinstance(duedate, str):
        raise TdkitError(f"nbgrader_config.py: {name('duedate')} must be a text.")
    if not isinstance(extensions, dict):
        raise TdkitError(f"nbgrader_config.py: {name('extensions')} must map student ids to dates.")
    return duedate, extensions, name


def _extensions(
    configured_extensions: dict[Any, str], zone: ZoneInfo, setting: str
) -> tuple[dict[str, datetime], tuple[str, ...]]:
    """Extensions by student id: a number key is refused (ids are texts), Moodle's
    « Participant NNNN » read as NNNN and said so, two keys for one student refused."""
    extensions: dict[str, datetime] = {}
    notes = []
    for key, text in configured_extensions.items():
        what = f"{setting}[{key!r}]"
        if not isinstance(key, str):
            raise TdkitError(
                f"nbgrader_config.py: {what}: the key {key!r} is not a text; student ids are written in "
                f"quotes, e.g. {{'{key}': '2026-12-06 18:00'}}."
            )
        sid, note = spelled_as_moodle(key, f"nbgrader_config.py: {setting}")
        if sid in extensions:
            raise TdkitError(
                f"nbgrader_config.py: {setting} gives student {sid} two due dates; keep one."
            )
        extensions[sid] = parse_local(text, zone, what)
        notes += [note] if note else []
    return extensions, tuple(notes)


def _check_penalty(config: Config, plugin: BasePlugin) -> None:
    """A negative penalty would silently become none; LatePenalty settings unused by the plugin too."""
    if not isinstance(plugin, LatePenalty):
        if config.get("LatePenalty"):
            raise TdkitError(
                f"nbgrader_config.py: c.LatePenalty is set but c.AssignLatePenalties.plugin_class is "
                f"{type(plugin).__name__}, which ignores it: add c.AssignLatePenalties.plugin_class = "
                "'tdkit.intake.late.LatePenalty', or remove the c.LatePenalty lines."
            )
        return
    for name in ("points_per_day", "zero_after_days"):
        value = getattr(plugin, name)
        if value is not None and value < 0:
            raise TdkitError(
                f"nbgrader_config.py: c.LatePenalty.{name} = {value!r} is negative: write it as a "
                "positive number (e.g. 2.0), or 0."
            )


def nbgrader_timestamp(moment: datetime, zone: ZoneInfo) -> str:
    """``moment`` as nbgrader writes timestamp.txt (date, time with microseconds, zone), in ``zone``:
    the zone's IANA name rather than an abbreviation, so nbgrader's parse_utc reads it exactly."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M:%S.%f} {zone.key}"
