"""The course's settings for one assignment, read once per command and passed down.

``tdkit grade`` reads ``nbgrader_config.py`` (limits, deadlines), the assignment's definition
(its groups, profile, probe) and ``td-requirements.txt`` here, once, before anyone is graded;
every step after (preparing each job, judging it, lateness, the course's grades) takes this
object instead of reading the files again. A mistake in any of them stops the command here,
with the message of the reader that found it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tdkit.core.assignment import Assignment, GradingProfile, probe_files
from tdkit.core.config import Limits, limits_from_config
from tdkit.core.course import Course
from tdkit.intake.late import Deadlines, deadlines_from_config
from tdkit.release.environment import CourseEnvironment, grading_environment


@dataclass(frozen=True)
class GradingSettings:
    definition: Assignment  # grader_tests/<assignment>/assignment.py
    limits: Limits  # c.TdkitLimits
    deadlines: Deadlines  # c.TdkitDeadlines (this assignment's) and the late penalty
    profile: GradingProfile  # the parameters and data of each untrusted run
    environment: CourseEnvironment  # td-requirements.txt, installed
    probe: tuple[tuple[str, str], ...]  # the files each sandbox job carries (probe_files)


def grading_settings(
    course: Course, *, limits: Limits | None = None, profile: GradingProfile | None = None
) -> GradingSettings:
    """``course``'s settings for its assignment; ``limits`` and ``profile`` override the course's."""
    config = course.nbgrader_config()
    definition = course.definition()
    return GradingSettings(
        definition,
        limits or limits_from_config(config),
        deadlines_from_config(config, course.assignment),
        profile or course.grading_profile(),
        grading_environment(course.root),
        tuple(probe_files(course.root, course.assignment, definition).items()),
    )
