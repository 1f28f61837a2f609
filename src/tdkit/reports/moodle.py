"""``tdkit export moodle``: grades, comments and feedback files back to Moodle.

Two files in ``reports/<assignment>/moodle/``:
- the grading worksheet saved by ``tdkit collect``, same bytes but ``Grade`` (the final score,
  on the assignment's ``Maximum Grade``) and ``Feedback comments`` (the score, each failed check
  in a short French line, the late penalty) filled, for "Upload grading worksheet". Students
  without a result keep their row as it was: an empty grade stays empty.
- ``feedback_files.zip`` for "Upload multiple feedback files in a zip": one self-contained
  HTML page per student, named ``<Full name>_<NNNN>_assignfeedback_file_retour_<assignment>.html``.
  Moodle's importer (``mod/assign/feedback/file/importziplib.php``) splits each name on '_':
  the second field is the participant number, the third and fourth the plugin, the rest the
  file name; so the full name must not hold '_' (Moodle's own export replaces it by a space).
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tdkit.core.assignment import Assignment
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.core.files import require_writable, write_atomically
from tdkit.intake.roster import load_roster, roster_dir
from tdkit.intake.worksheet import Worksheet, read_worksheet
from tdkit.reports.html import Plotter, format_delay, format_number, group_checks, render_student
from tdkit.reports.results import AssignmentResults, StudentResult

ZIP_NAME = "feedback_files.zip"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed: the same results give the same zip
MAX_LINE = 160  # characters of a failed check's line in the comments
_UNSAFE_NAME = re.compile(r"[_/\\:*?\"<>|\x00-\x1f]+")


@dataclass(frozen=True)
class MoodleExport:
    worksheet: Path  # for "Upload grading worksheet"
    feedback_zip: Path  # for "Upload multiple feedback files in a zip"
    graded: list[str]  # students whose row got a grade and a feedback file
    without_result: list[str]  # worksheet students with no result: row left as downloaded
    not_in_worksheet: list[str]  # results with no worksheet row: not sent to Moodle
    comments: bool  # the worksheet has a 'Feedback comments' column (the assignment enables it)
    # Students without a final grade -> what it waits for (answers a TA has not graded, a grading
    # that failed on the grader's side): grade left empty (or provisional).
    waiting: dict[str, list[str]]
    provisional: bool  # their grade was written all the same, said so in the comment


def feedback_file_name(assignment: str) -> str:
    return f"retour_{assignment}.html"


def zip_entry_name(full_name: str, participant_id: str, assignment: str) -> str:
    """The name Moodle's feedback-zip importer matches to the participant."""
    name = " ".join(_UNSAFE_NAME.sub(" ", full_name).split()) or "Participant"
    return f"{name}_{participant_id}_assignfeedback_file_{feedback_file_name(assignment)}"


def _first_line(message: str) -> str:
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1].rstrip() + "…"


def comment_lines(student: StudentResult, assignment: str, definition: Assignment) -> list[str]:
    """The feedback comments, short French lines (plain text): the grade and its parts, one line
    per function that lost points, the overrides, the TA's comments, the penalty."""
    head = "Note provisoire" if student.pending else "Note"
    parts = [f"automatique {format_number(student.automatic)}"]
    if student.hand_cells:
        parts.append(
            f"questions {format_number(student.by_hand)} / {format_number(student.hand_maximum)}"
        )
    if student.late_penalty:
        parts.append(f"pénalité de retard −{format_number(student.late_penalty)}")
    grade = f"{format_number(student.final_score)} / {format_number(student.maximum)}"
    lines = [f"{head} : {grade} ({', '.join(parts)})."]
    if student.pending:
        lines.append(
            "En attente de correction à la main : "
            + ", ".join(student.pending)
            + " (cette note ne les compte pas encore)."
        )
    if student.seconds_late:
        penalty = (
            f"pénalité de {format_number(student.late_penalty)} point(s)"
            if student.late_penalty
            else "sans pénalité"
        )
        lines.append(f"Rendu avec {format_delay(student.seconds_late)} de retard, {penalty}.")
    if student.graded_with:
        lines.append(
            f"Travail du groupe « {student.group} », corrigé une fois pour tout le groupe."
        )
    whole = student.failure if student.refused else student.notice
    if whole:
        lines.append(_first_line(whole))
    else:
        if student.failure:
            lines.append(f"Exécution interrompue : {_first_line(student.failure)}")
        for group in group_checks(student.checks, definition.groups):
            failed = [c for c in group.checks if not c.passed]
            if failed:
                got = sum(c.points for c in group.checks)
                out_of = sum(c.max_points for c in group.checks)
                lines.append(
                    f"`{_function(definition, group.name)}` : "
                    f"{format_number(got)} / {format_number(out_of)} — {_first_line(failed[0].message)}"
                )
    for cell in student.overrides:
        reason = f" : {_first_line(cell.comment)}" if cell.comment else ""
        lines.append(
            f"{cell.cell} modifié par le correcteur, {format_number(cell.auto_points or 0.0)} → "
            f"{format_number(cell.points)}{reason}"
        )
    lines += [
        f"Commentaire du correcteur ({cell.cell}) : {cell.comment}"
        for cell in student.cells
        if cell.comment and not cell.overridden
    ]
    lines.append(f"Détail dans le fichier de retour {feedback_file_name(assignment)}.")
    return lines


def _function(definition: Assignment, group: str) -> str:
    found = definition.group(group)
    return found.function if found is not None else group


def comments_html(lines: list[str]) -> str:
    """Moodle keeps feedback comments as HTML: one paragraph per line."""
    return "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)


def comments_text(cell: str) -> list[str]:
    """The lines of a ``Feedback comments`` cell written by comments_html."""
    return [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", cell, flags=re.DOTALL)]


def moodle_grade(student: StudentResult, max_grade: float | None) -> str:
    """The course's grade scaled from the assignment's total to the sheet's maximum grade (Moodle
    skips a grade above it), '.' decimals."""
    value = student.final_score
    if max_grade is not None and student.maximum:
        value = value / student.maximum * max_grade
    return f"{value:.2f}"


def _max_grade(sheet: Worksheet) -> float | None:
    index = sheet.column("max_grade")
    values = {row[index].strip() for row in sheet.rows} if index is not None else set()
    try:
        return float(values.pop().replace(",", ".")) if len(values) == 1 else None
    except ValueError:
        return None


def export_moodle(
    course: Course,
    results: AssignmentResults,
    out_dir: Path | None = None,
    *,
    provisional: bool = False,
) -> MoodleExport:
    """Fill the saved grading worksheet and build the feedback-files zip from ``results`` (the
    course's grades, tdkit.trusted.course_grade). A student whose answers wait for a TA keeps an
    empty grade, unless ``provisional``: then automatic + what is graded, said so in the comment."""
    roster = load_roster(course)
    if roster.worksheet is None:
        raise TdkitError(
            "No grading worksheet collected: run 'tdkit collect ARCHIVE.zip --worksheet WORKSHEET.csv' "
            "(Moodle: Grading action > Download grading worksheet), then 'tdkit grade'."
        )
    sheet = read_worksheet(roster_dir(course) / roster.worksheet)
    sheet.require("grade", "Moodle reads the grades there")
    has_comments = sheet.column("feedback") is not None
    max_grade = _max_grade(sheet)
    in_sheet = {sid for row in sheet.rows if (sid := sheet.participant_id(row))}
    waiting = {
        sid: results.students[sid].waiting_for
        for sid in sorted(in_sheet & set(results.students))
        if results.students[sid].waiting_for
    }
    graded = sorted((in_sheet & set(results.students)) - (set() if provisional else set(waiting)))
    out = out_dir or course.reports / "moodle"
    require_writable(out, "tdkit export moodle")
    definition = course.definition()
    cells = {}
    for sid in graded:
        student = results.students[sid]
        cells[sid] = {"grade": moodle_grade(student, max_grade)}
        if has_comments:
            cells[sid]["feedback"] = comments_html(
                comment_lines(student, results.assignment, definition)
            )
    worksheet_out = out / sheet.name
    write_atomically(worksheet_out, sheet.with_cells(cells).to_bytes())
    buffer = io.BytesIO()
    plotter = Plotter()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for sid in graded:
            name = str(roster.participants.get(sid, {}).get("full_name") or "")
            page = render_student(
                results.students[sid],
                results.assignment,
                definition,
                plotter,
                summary_href=None,
                packages=results.environment,
            )
            info = zipfile.ZipInfo(
                zip_entry_name(name, sid, results.assignment), date_time=ZIP_DATE
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, page.encode("utf-8"))
    feedback_zip = out / ZIP_NAME
    write_atomically(feedback_zip, buffer.getvalue())
    return MoodleExport(
        worksheet=worksheet_out,
        feedback_zip=feedback_zip,
        graded=graded,
        without_result=sorted(in_sheet - set(results.students)),
        not_in_worksheet=sorted(set(results.students) - in_sheet),
        comments=has_comments,
        waiting=waiting,
        provisional=provisional,
    )
