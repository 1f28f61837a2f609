"""Deadlines and late penalties read from nbgrader_config.py (tdkit.intake.late)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from nbgrader.utils import parse_utc

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.intake.late import Deadlines, deadlines_from_config
from tdkit.reports.html import format_delay

HEADER = 'c = get_config()  # noqa: F821\nc.Exchange.timezone = "Europe/Paris"\n'
DUE = 'c.TdkitDeadlines.duedate = "2024-12-03 12:00"\n'


def deadlines(tmp_path: Path, settings: str) -> Deadlines:
    (tmp_path / "nbgrader_config.py").write_text(HEADER + settings)
    return deadlines_from_config(Course(tmp_path).nbgrader_config())


def test_points_per_started_day_then_zero(tmp_path: Path) -> None:
    """Does tdkit's plugin take points per started day, give zero past the cut-off, nothing when on
    time or without a timestamp, and an extension move the student's own due date?"""
    late = deadlines(
        tmp_path,
        DUE
        + 'c.TdkitDeadlines.extensions = {"7": "2024-12-05 12:00"}\n'
        + 'c.AssignLatePenalties.plugin_class = "tdkit.intake.late.LatePenalty"\n'
        + "c.LatePenalty.points_per_day = 2.0\nc.LatePenalty.zero_after_days = 3.0\n",
    )
    assert late.assess("1", "2024-12-03 11:59:00.000000 Europe/Paris", 21.0).penalty == 0
    hour = late.assess("1", "2024-12-03 13:00:00.000000 Europe/Paris", 21.0)
    assert (hour.seconds_late, hour.penalty) == (3600, 2.0)
    assert (
        late.assess("1", "2024-12-05 12:30:00.000000 Europe/Paris", 21.0).penalty == 6.0
    )  # 3 started days
    assert (
        late.assess("1", "2024-12-06 12:30:00.000000 Europe/Paris", 21.0).penalty == 21.0
    )  # past 3 days: zero
    assert (
        late.assess("1", "2024-12-03 13:00:00.000000 Europe/Paris", 1.0).penalty == 1.0
    )  # never above the score
    assert late.assess("1", None, 21.0).penalty == 0  # no timestamp: on time
    assert late.assess("7", "2024-12-05 11:00:00.000000 Europe/Paris", 21.0).penalty == 0
    assert late.extension("7") == timedelta(days=2) and late.extension("1") is None
    assert str(parse_utc("2024-12-03 13:00:00.000000 Europe/Paris")) == "2024-12-03 12:00:00"


def test_nbgrader_plugin_by_default(tmp_path: Path) -> None:
    """Without tdkit's plugin, is nbgrader's own LateSubmissionPlugin used ('none': no penalty;
    'zero': the whole score)?"""
    assert deadlines(tmp_path, DUE).assess("1", "2024-12-04 12:00:00.000000 UTC", 21.0).penalty == 0
    zero = deadlines(tmp_path, DUE + 'c.LateSubmissionPlugin.penalty_method = "zero"\n')
    assert zero.assess("1", "2024-12-04 12:00:00.000000 UTC", 21.0).penalty == 21.0


@pytest.mark.parametrize(
    ("settings", "fix"),
    [
        ("c.TdkitDeadlines.due = '2024-12-03'\n", "valid keys: assignments, duedate, extensions"),
        (
            "c.LatePenalty.per_day = 1\n",
            "valid keys: penalty_method, points_per_day, zero_after_days",
        ),
        ("c.TdkitDeadlines.duedate = '3/12/2024'\n", "write it as 'YYYY-MM-DD HH:MM'"),
        (
            "c.TdkitDeadlines.extensions = {'1': '2024-12-05'}\n",
            "needs a due date (c.TdkitDeadlines.duedate)",
        ),
        ("c.Exchange.timezone = 'Paris'\n", "an IANA name such as 'Europe/Paris'"),
    ],
)
def test_bad_settings_name_the_fix(tmp_path: Path, settings: str, fix: str) -> None:
    """Is an unknown key, a date in another format, an extension without a due date or an unknown
    time zone an error that says what to write?"""
    with pytest.raises(TdkitError, match=re.escape(fix)):
        deadlines(tmp_path, settings)


def test_delay_in_french() -> None:
    """Is a delay written the French way, days, hours and minutes?"""
    assert format_delay(2 * 3600 + 5 * 60) == "2 h 5 min"
    assert format_delay(86400 + 3 * 3600) == "1 j 3 h"
    assert format_delay(20) == "0 min"


def test_each_assignment_has_its_own_deadlines(tmp_path: Path) -> None:
    """With c.TdkitDeadlines.assignments, does each assignment get its own due date and
    extensions, and is an assignment left out, or a course-wide date beside them, refused?"""
    weekly = (
        "c.TdkitDeadlines.assignments = {\n"
        '    "td_cnn": {"duedate": "2024-12-03 12:00", "extensions": {"7": "2024-12-05 12:00"}},\n'
        '    "td_mlp": {"duedate": "2024-11-26 12:00"},\n'
        '    "td_libre": {},\n'
        "}\n"
    )
    (tmp_path / "nbgrader_config.py").write_text(HEADER + weekly)
    config = Course(tmp_path).nbgrader_config()
    cnn, mlp = deadlines_from_config(config, "td_cnn"), deadlines_from_config(config, "td_mlp")
    assert str(cnn.due_for("1")) == "2024-12-03 12:00:00+01:00"
    assert str(cnn.due_for("7")) == "2024-12-05 12:00:00+01:00"
    assert str(mlp.due_for("7")) == "2024-11-26 12:00:00+01:00"
    assert deadlines_from_config(config, "td_libre").due is None
    with pytest.raises(TdkitError, match=r"no entry for 'td_rnn' \(it has 'td_cnn', 'td_mlp'"):
        deadlines_from_config(config, "td_rnn")
    (tmp_path / "nbgrader_config.py").write_text(
        HEADER + weekly.replace("2024-12-05 12:00", "le 5")
    )
    with pytest.raises(TdkitError, match=r"assignments\['td_cnn'\]\['extensions'\]\['7'\]"):
        deadlines_from_config(Course(tmp_path).nbgrader_config(), "td_cnn")
    with pytest.raises(TdkitError, match="move c.TdkitDeadlines.duedate and .extensions into it"):
        deadlines(tmp_path, DUE + weekly)
