"""The ``tdkit`` command: one thin command per verb over a typed function."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tdkit.core.course import find_course
from tdkit.core.errors import TdkitError

if TYPE_CHECKING:
    from tdkit.demo import DemoResult

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Print a TdkitError's message (which names the fix) and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TdkitError as error:
            click.echo(f"tdkit: {error}", err=True)
            sys.exit(2)
        except Exception as error:
            message = input_problem(error)
            if message is None:
                raise
            click.echo(f"tdkit: {message}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


# traitlets' words for a refused value: "The 'x' trait of a C instance expected an int, not the str '6G'."
TRAIT_ERROR = re.compile(
    r"The '(?P<name>\w+)' trait of an? (?P<cls>\w+) instance expected (?P<expected>.+?), "
    r"not the \w+ (?P<found>.+)\.",
    re.DOTALL,
)


def input_problem(error: Exception) -> str | None:
    """A library's error that comes from the course's files or gradebook, as a message: a safety
    net behind the checks made where each file is read; None for anything else (a bug: traceback)."""
    from traitlets import TraitError

    if isinstance(error, TraitError):
        said = TRAIT_ERROR.fullmatch(str(error))
        if said is None:
            return f"nbgrader_config.py: {error} Fix that value, then run the command again."
        return (
            f"nbgrader_config.py: c.{said['cls']}.{said['name']} = {said['found']} is not valid: "
            f"write {said['expected']}, then run the command again."
        )
    database = sys.modules.get("sqlalchemy.exc")
    if database is not None and isinstance(error, database.DatabaseError):
        reason = str(error.orig or error).strip().splitlines()[0]
        return (
            f"the gradebook refused the command ({reason}): close any other program using it "
            "(formgrader, nbgrader, a sqlite3 shell), then run the command again."
        )
    return None


@click.group()
def main() -> None:
    """Release, grade and give feedback on a course's notebook labs (nbgrader assignments)."""


@main.command()
@click.argument("assignment", required=False)
@click.option(
    "--no-verify", is_flag=True, help="Skip running the solution notebook before releasing."
)
@reports_errors
def release(assignment: str | None, no_verify: bool) -> None:
    """Check the solution of ASSIGNMENT (default: the course's only one), generate
    release/<assignment>/<assignment>.ipynb and prove it leaks nothing."""
    from tdkit.release.generate import release as run_release

    result = run_release(find_course(assignment=assignment), verify=not no_verify)
    if result.verified:
        click.echo(
            f"solution notebook: every visible and hidden test passed ({result.verify_seconds:.1f} s)"
        )
    click.echo(
        f"environment: td-requirements.txt ({', '.join(result.packages)}), listed in the notebook"
    )
    click.echo(f"pair: {result.pair_path}")
    click.echo(
        f"release: {result.release_path} ({'updated' if result.changed else 'unchanged'}; no leak)"
    )


@main.command()
@click.argument("archive", type=click.Path())
@click.option(
    "--force", is_flag=True, help="Replace submissions already collected whose content differs."
)
@click.option(
    "--worksheet",
    type=click.Path(path_type=Path),
    default=None,
    help="Moodle's grading worksheet (Download grading worksheet): names, e-mails, dates, groups.",
)
@click.option(
    "--groups",
    type=click.Path(path_type=Path),
    default=None,
    help="A CSV with columns group,student_id (one row per member): pairs graded once.",
)
@click.option(
    "--assignment",
    default=None,
    help="The assignment the archive hands in (default: the course's only one).",
)
@reports_errors
def collect(
    archive: str,
    force: bool,
    worksheet: Path | None,
    groups: Path | None,
    assignment: str | None,
) -> None:
    """Copy each student's notebook from an LMS export zip into
    submitted/<id>/<assignment>/<assignment>.ipynb."""
    from pathlib import Path

    from tdkit.intake.collect import collect as run_collect

    course = find_course(assignment=assignment)
    report = run_collect(course, Path(archive), force=force, worksheet=worksheet, groups=groups)
    for line in report.lines():
        click.echo(line)
    click.echo(report.summary())


@main.command()
@click.argument("assignment", required=False)
@click.option(
    "--student", default=None, help="Regrade this student only (others keep their results)."
)
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="Grade every submission again, even those unchanged since last time.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Submissions run in parallel (one gradebook writer).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tls://HOST:PORT",
    help="Run the submissions on this Dask cluster's workers; checks and gradebook stay here.",
)
@click.option(
    "--tls",
    default=None,
    type=click.Path(path_type=Path),
    metavar="DIR/NAME",
    help="This machine's certificate folder from 'tdkit certs', for a tls:// scheduler.",
)
@reports_errors
def grade(
    assignment: str | None,
    student: str | None,
    everyone: bool,
    workers: int,
    scheduler: str | None,
    tls: Path | None,
) -> None:
    """Grade the new and changed submissions of ASSIGNMENT (default: the course's only one) under
    submitted/ and write reports/<assignment>/.

    A submission graded before, unchanged, by the same grader (release, grader_tests/, reference/,
    the course environment, limits, grading profile, tdkit) keeps its result.
    """
    from tdkit.trusted.grade import grade_all

    course = find_course(assignment=assignment)
    if scheduler is not None:
        from tdkit.trusted.distributed import grade_on_cluster

        if workers != 1:
            raise TdkitError(
                "--workers is for local runs: with --scheduler, 'dask worker --nthreads N' sets it."
            )
        run = grade_on_cluster(
            course, scheduler, tls, student=student, everyone=everyone, progress=click.echo
        )
    else:
        if tls is not None:
            raise TdkitError("--tls goes with --scheduler tls://HOST:PORT.")
        run = grade_all(
            course, student=student, everyone=everyone, workers=workers, progress=click.echo
        )
    click.echo(
        f"graded {len(run.graded)} submission(s) in {run.grading_seconds:.1f} s, kept {len(run.plan.keep)} "
        f"unchanged result(s); {run.seconds:.1f} s in all"
    )
    click.echo(
        f"results: {run.results_json}\ngrades:  {run.grades_csv}\nreports: {run.reports_dir}/index.html"
    )


@main.command()
@click.argument("assignment", required=False)
@reports_errors
def report(assignment: str | None) -> None:
    """Write the feedback pages and the class summary again, with the hand grading and comments
    entered in formgrader since the last grading, grading nobody."""
    from tdkit.core.files import require_writable
    from tdkit.reports.course_page import write_course_page
    from tdkit.reports.html import render_reports
    from tdkit.trusted.course_grade import course_grades, keep_course_grades

    course = find_course(assignment=assignment)
    require_writable(course.reports / "html", "tdkit report")
    results = course_grades(course)
    files = render_reports(results, course.definition(), course.reports / "html")
    keep_course_grades(course, results)
    click.echo(f"{len(files.students)} feedback page(s) and the summary: {files.summary}")
    click.echo(f"the course's page, every assignment: {write_course_page(course)}")


@main.command()
@click.argument("assignment", required=False)
@reports_errors
def status(assignment: str | None) -> None:
    """How much hand grading is left (formgrader): per answer, graded / to grade, and whose copy."""
    from tdkit.reports.results import hand_grading_queue
    from tdkit.trusted.course_grade import course_grades, keep_course_grades

    course = find_course(assignment=assignment)
    results = course_grades(course)
    keep_course_grades(course, results)
    queue = hand_grading_queue(results)
    if not queue:
        click.echo("no answer is graded by hand in this assignment")
    for answer in queue:
        to_grade = answer.waiting + [
            f"{sid} (answer changed since graded)" for sid in answer.changed
        ]
        click.echo(
            f"{answer.cell}: {len(answer.graded)} graded, {len(to_grade)} to grade"
            + (f": {', '.join(to_grade)}" if to_grade else "")
        )
    waiting = sorted(sid for sid, s in results.students.items() if s.pending)
    click.echo(
        f"{len(results.students) - len(waiting)} of {len(results.students)} student(s) have their final grade"
        + (f"; waiting: {', '.join(waiting)}" if waiting else "")
    )


@main.command()
@click.argument("assignment", required=False)
@reports_errors
def similarity(assignment: str | None) -> None:
    """Compare every pair of submissions and write reports/<assignment>/similarity.html and .csv."""
    from tdkit.reports.similarity import similarity as run_similarity

    result = run_similarity(find_course(assignment=assignment))
    click.echo(
        f"compared {len(result.students)} submission(s), {len(result.pairs)} pair(s) "
        f"(group members not compared) in {result.seconds:.1f} s"
    )
    for sid, why in sorted(result.unreadable.items()):
        click.echo(f"not read: {sid}: {why}")
    listed = 20  # the strongest, a line each: the page and the CSV have the rest
    for pair in result.reported[:listed]:
        click.echo(
            f"reported: {pair.a} / {pair.b}: code {pair.code:.0%} (z {pair.code_z:.1f}), answers "
            f"{pair.text:.0%} (z {pair.text_z:.1f}); standing out: {', '.join(pair.flagged) or 'all at once'}"
        )
    if len(result.reported) > listed:
        click.echo(f"... and {len(result.reported) - listed} weaker ones: see the page and the CSV")
    click.echo(f"{len(result.reported)} pair(s) reported: {result.html} (table: {result.csv})")


@main.group()
def export() -> None:
    """Send grades and feedback back to the LMS."""


@export.command("moodle")
@click.argument("assignment", required=False)
@click.option(
    "--provisional",
    is_flag=True,
    help="Also write the grade of students whose answers wait for a TA (automatic + what is graded), "
    "said so in their comment.",
)
@reports_errors
def export_moodle(assignment: str | None, provisional: bool) -> None:
    """The grading worksheet with grades and comments, and the feedback-files zip, for Moodle."""
    from tdkit.reports.moodle import export_moodle as run_export
    from tdkit.trusted.course_grade import course_grades, keep_course_grades

    course = find_course(assignment=assignment)
    results = course_grades(course)
    result = run_export(course, results, provisional=provisional)
    keep_course_grades(course, results)
    click.echo(
        f"worksheet: {result.worksheet} ({len(result.graded)} graded) -> Upload grading worksheet"
    )
    click.echo(f"feedback:  {result.feedback_zip} -> Upload multiple feedback files in a zip")
    if result.without_result:
        click.echo(f"no result, grade left empty: {', '.join(result.without_result)}")
    if result.not_in_worksheet:
        click.echo(f"not in the worksheet, not sent: {', '.join(result.not_in_worksheet)}")
    for sid, answers in result.waiting.items():
        state = "provisional grade written" if result.provisional else "grade left empty"
        click.echo(f"no final grade yet, {state}: {sid} (waits for {', '.join(answers)})")
    if result.waiting and not result.provisional:
        click.echo(
            "grade them in formgrader ('tdkit status' lists them) and export again, or export with "
            "--provisional"
        )
    if not result.comments:
        click.echo(
            "no 'Feedback comments' column: enable Feedback comments in the assignment, download the worksheet "
            "again and collect it to send the comments"
        )


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("names", nargs=-1, required=True)
@reports_errors
def certs(directory: Path, names: tuple[str, ...]) -> None:
    """Make the course CA in DIRECTORY/ca/ (once) and a certificate folder DIRECTORY/NAME/ per machine."""
    from tdkit.trusted.certs import make_certificates

    result = make_certificates(directory, names)
    click.echo(
        f"course CA: {result.ca_folder} ({'created' if result.ca_created else 'kept'}; keep ca-key.pem here)"
    )
    for machine in result.machines:
        click.echo(
            f"{machine.folder.name}: {machine.folder}/ (ca.pem, cert.pem, key.pem): copy it to that machine"
        )


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "--requirements",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The course environment (default: td-requirements.txt beside NOTEBOOK or above).",
)
@reports_errors
def check(notebook: Path, requirements: Path | None) -> None:
    """Run the visible tests of NOTEBOOK on small synthetic data (for students)."""
    from tdkit.selfcheck import self_check

    report = self_check(notebook, requirements=requirements)
    for note in report.environment_notes():
        click.echo(f"note: {note}")
    for test in report.tests:
        mark = "ok  " if test.passed else "FAIL"
        click.echo(
            f"{mark} {test.grade_id} ({test.points:g} pt){'' if test.passed else ': ' + test.message}"
        )
    for error in report.other_errors:
        click.echo(f"error in cell {error.index}: {error.ename}: {error.evalue}")
    if report.failure:
        click.echo(f"run stopped: {report.failure}")
    passed = sum(t.passed for t in report.tests)
    click.echo(f"{passed} passed, {len(report.tests) - passed} failed ({report.seconds:.0f} s)")
    sys.exit(0 if report.passed else 1)


@main.command()
@reports_errors
def demo() -> None:
    """Release, collect the example submissions, grade them and print the score table, for each
    assignment of the course."""
    from tdkit.core.course import find_course_root
    from tdkit.demo import run_demo

    for result in run_demo(find_course_root(), say=click.echo):
        _demo_table(result)


def _demo_table(result: DemoResult) -> None:
    students = result.grading.results.students
    width = max(len(s) for s in students)
    click.echo(
        f"\n{result.assignment}\n{'student':<{width}}  automatic  failed checks  seconds  late penalty  grade        group"
    )
    for sid in sorted(students):
        student = students[sid]
        failed = sum(not c.passed for c in student.checks)
        grade = (
            f"{len(student.pending)} to grade"
            if student.pending
            else f"{student.final_score:g}/{student.maximum:g}"
        )
        click.echo(
            f"{sid:<{width}}  {student.score:>4g}/{student.max_score:<4g}  {failed:>13}  {student.seconds:>7.1f}"
            f"  {student.late_penalty:>12g}  {grade:<11}"
            f"  {student.group or '-'}"
            + (f" (graded with {student.graded_with})" if student.graded_with else "")
            + (f"  {student.failure.splitlines()[0][:50]}" if student.failure else "")
        )
    reports = result.grading.reports_dir
    click.echo(f"\nreports: {reports}/index.html (one page per student)")
    click.echo(f"results: {result.grading.results_json}, grades: {result.grading.grades_csv}")
    click.echo(f"Moodle: {result.moodle.worksheet} -> Upload grading worksheet")
    click.echo(f"Moodle: {result.moodle.feedback_zip} -> Upload multiple feedback files in a zip")
    if result.moodle.waiting:
        click.echo(
            f"hand grading: {len(result.moodle.waiting)} student(s) wait for a TA in formgrader "
            "('tdkit status'); their grade stays empty in the worksheet until then"
        )
