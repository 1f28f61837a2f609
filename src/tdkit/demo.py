"""``tdkit demo`` (``make demo``): the instructor's whole job on the example submissions.

For each assignment of the course: release it, collect ``examples/<assignment>/submissions/`` as
Moodle would bring them (the submissions zip and the grading worksheet beside it: one pair, one
late submission, one student with nothing handed in), grade every one on the assignment's demo
data (``Assignment.demo_source``), export the worksheet and feedback zip back for Moodle, compare
the submissions with one another (the similarity page); then the course page.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tdkit.core.course import Course, course_assignments
from tdkit.core.errors import TdkitError
from tdkit.intake.late import deadlines_from_config
from tdkit.intake.worksheet import Worksheet, format_moodle_date
from tdkit.release.generate import ReleaseResult, release
from tdkit.reports.moodle import MoodleExport, export_moodle
from tdkit.reports.similarity import SimilarityResult, similarity
from tdkit.trusted.grade import GradeRun, grade_all


@dataclass(frozen=True)
class DemoResult:
    assignment: str
    data_source: str | None  # None: the assignment's default
    release: ReleaseResult
    grading: GradeRun
    moodle: MoodleExport
    similarity: SimilarityResult


# The demo's class: one participant per example notebook (numbered as Moodle does), a partner of
# the first one with no folder of their own (a Moodle group submission), one who handed nothing in.
FIRST_PARTICIPANT = 100001
PAIR = "Binôme 1"
LATE = 1  # the second example notebook is handed in a day and three hours after the due date
WORKSHEET_HEADER = (
    "Identifier",
    "Full name",
    "Email address",
    "Status",
    "Group",
    "Grade",
    "Maximum Grade",
    "Grade can be changed",
    "Last modified (submission)",
    "Last modified (grade)",
    "Feedback comments",
)


@dataclass(frozen=True)
class DemoStudent:
    participant: str
    full_name: str
    notebook: Path | None  # None: nothing handed in (the partner's comes with the group's)
    group: str
    submitted: datetime | None


def demo_class(examples: Path, due: datetime) -> list[DemoStudent]:
    notebooks = sorted(examples.glob("*.ipynb"))
    if not notebooks:
        raise TdkitError(
            f"No example notebook in {examples}: run the examples' build_submissions.py beside it."
        )
    students = []
    for number, notebook in enumerate(notebooks, FIRST_PARTICIPANT):
        late = number - FIRST_PARTICIPANT == LATE
        students.append(
            DemoStudent(
                str(number),
                f"{notebook.stem.split('_')[0].capitalize()} Démo",
                notebook,
                PAIR if number == FIRST_PARTICIPANT else "Default group",
                due + (timedelta(days=1, hours=3) if late else -timedelta(hours=5)),
            )
        )
    number = FIRST_PARTICIPANT + len(notebooks)
    students.append(DemoStudent(str(number), "Julien Démo", None, PAIR, students[0].submitted))
    students.append(DemoStudent(str(number + 1), "Karl Démo", None, "Default group", None))
    return students


def lms_archive(students: list[DemoStudent], assignment: str, archive: Path) -> Path:
    """The examples as Moodle's "Download all submissions": one folder per submission."""
    with zipfile.ZipFile(archive, "w") as zf:
        for student in students:
            if student.notebook is not None:
                zf.write(
                    student.notebook,
                    f"{student.full_name}_{student.participant}_assignsubmission_file_/{assignment}.ipynb",
                )
    return archive


def grading_worksheet(students: list[DemoStudent], zone: ZoneInfo, path: Path) -> Path:
    """The class as Moodle's "Download grading worksheet" writes it (English, group submissions)."""
    rows = []
    for s in students:
        submitted = format_moodle_date(s.submitted.astimezone(zone)) if s.submitted else "-"
        email = f"{s.full_name.split()[0].lower()}.demo@etu.example.fr"
        status = "Submitted for grading" if s.submitted else "No submission"
        rows.append(
            (
                f"Participant {s.participant}",
                s.full_name,
                email,
                status,
                s.group,
                "",
                "21.00",
                "Yes",
                submitted,
                "-",
                "",
            )
        )
    sheet = Worksheet(
        path.name, WORKSHEET_HEADER, tuple(rows), bom=True, delimiter=",", newline="\n"
    )
    path.write_bytes(sheet.to_bytes())
    return path


def run_demo(root: Path, say: Callable[[str], None] = print) -> list[DemoResult]:
    """The demo of every assignment of the course at ``root``, then its course page."""
    from tdkit.reports.course_page import write_course_page

    results = [demo_assignment(Course(root, name), say) for name in course_assignments(root)]
    if results:
        say(f"course page: {write_course_page(Course(root, results[0].assignment))}")
    return results


def demo_assignment(course: Course, say: Callable[[str], None] = print) -> DemoResult:
    from tdkit.intake.collect import collect

    name = course.assignment
    say(f"== {name}")
    source = course.demo_source(say)
    released = release(course)
    say(
        f"released {released.release_path} (solution verified in {released.verify_seconds:.0f} s, no leak)"
    )
    deadlines = deadlines_from_config(course.nbgrader_config(), name)
    due = deadlines.due or datetime.now(deadlines.timezone)
    students = demo_class(course.root / "examples" / name / "submissions", due)
    with tempfile.TemporaryDirectory(prefix="tdkit-demo-") as scratch:
        archive = lms_archive(students, name, Path(scratch) / "moodle_export.zip")
        worksheet = grading_worksheet(
            students, deadlines.timezone, Path(scratch) / f"Grades-{name.upper()}-{name}.csv"
        )
        collected = collect(course, archive, force=True, worksheet=worksheet)
    for line in collected.lines():
        say(f"  {line}")
    say(
        f"collected {len(collected.taken)} submission(s) from a Moodle export and its grading worksheet "
        f"({len(collected.missing)} missing)"
    )
    grading = grade_all(course, profile=course.grading_profile(source), workers=2, progress=say)
    moodle = export_moodle(course, grading.results)
    similar = similarity(course)
    say(
        f"similarity: {len(similar.reported)} pair(s) reported among {len(similar.pairs)}: {similar.html}"
    )
    return DemoResult(name, source, released, grading, moodle, similar)
