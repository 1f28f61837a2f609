"""The feedback pages: one HTML page per student and the class summary (tdkit.reports.html)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pytest
from click.testing import CliRunner
from conftest import copy_course, td_cnn
from markupsafe import escape
from PIL import Image

from tdkit.cli import main
from tdkit.reports.html import ReportFiles, format_message, render_reports, render_student
from tdkit.reports.results import AssignmentResults, read_results_json

matplotlib.use("Agg")

FIXTURE = Path(__file__).parent / "files" / "results" / "results.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PERFECT, FAILED_TRAIN, CRASHED = "alice_martin", "bruno_petit", "chloe_durand"


class _Tags(HTMLParser):
    """Collects the attributes of every start tag, by tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str | None]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.setdefault(tag, []).append(dict(attrs))


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags.get(name, [])


@pytest.fixture(scope="module")
def results() -> AssignmentResults:
    return read_results_json(FIXTURE)


@pytest.fixture(scope="module")
def report(results: AssignmentResults, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return render_reports(results, td_cnn(), tmp_path_factory.mktemp("report"))


def page(report: ReportFiles, student_id: str) -> str:
    return report.students[student_id].read_text(encoding="utf-8")


def test_fixture_follows_the_results_schema(results: AssignmentResults) -> None:
    """Does the hand-written fixture read back to exactly what results.json would hold?"""
    assert set(results.students) == {PERFECT, FAILED_TRAIN, CRASHED}
    assert results.to_json() == json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_one_page_per_student_and_a_summary(
    report: ReportFiles, results: AssignmentResults
) -> None:
    """Is a page written for every student, named after the id, plus index.html?"""
    assert report.summary == report.summary.parent / "index.html"
    assert report.summary.is_file()
    assert set(report.students) == set(results.students)
    for student_id, path in report.students.items():
        assert path == report.summary.parent / f"{student_id}.html"
        assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_every_image_is_an_embedded_png(report: ReportFiles) -> None:
    """Does every <img> carry a data:image/png;base64 URI that decodes to a real, non-empty PNG?"""
    expected = {
        PERFECT: 3,
        FAILED_TRAIN: 3,
        CRASHED: 3,
    }  # curve (reference alone if need be) + 2 matrices
    for path in [report.summary, *report.students.values()]:
        images = tags(path.read_text(encoding="utf-8"), "img")
        assert images, path.name
        if path.stem in expected:
            assert len(images) == expected[path.stem], path.name
        for img in images:
            src = img["src"] or ""
            prefix = "data:image/png;base64,"
            assert src.startswith(prefix), path.name
            data = base64.b64decode(src[len(prefix) :], validate=True)
            assert data.startswith(PNG_SIGNATURE)
            with Image.open(io.BytesIO(data)) as png:
                png.verify()
            with Image.open(io.BytesIO(data)) as png:
                assert png.format == "PNG" and png.width > 50 and png.height > 50


def test_student_text_is_escaped(results: AssignmentResults) -> None:
    """Can a message, an error or a failure inject markup into the page?"""
    student = results.students[FAILED_TRAIN]
    hostile = '<script>alert("x")</script> `a<b` fin'
    check = dataclasses.replace(student.checks[0], passed=False, points=0.0, message=hostile)
    error = dataclasses.replace(
        results.students[CRASHED].errors[0], evalue=hostile, traceback=hostile
    )
    html = render_student(
        dataclasses.replace(student, checks=[check], errors=[error], failure=hostile),
        "td_cnn",
        td_cnn(),
    )
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<code>a&lt;b</code>" in html  # backticks become <code> after escaping, not before


def test_tracebacks_and_run_failure_appear(report: ReportFiles, results: AssignmentResults) -> None:
    """Does a crashed submission show each failing cell's traceback and the run failure?"""
    html = page(report, CRASHED)
    student = results.students[CRASHED]
    assert student.failure and student.failure in html
    for error in student.errors:
        assert f"Cellule n° {error.index}" in html
        assert error.cell_id in html and error.ename in html
        assert str(escape(error.traceback.splitlines()[-1])) in html
    assert "File &lt;module&gt;:1, in &lt;lambda&gt;(x)" in html  # tracebacks are escaped too
    assert '<pre class="traceback">' in html
    assert "Erreurs d'exécution" not in page(report, PERFECT)


def test_failing_checks_are_shown_first_with_their_messages(
    report: ReportFiles, results: AssignmentResults
) -> None:
    """Are failed checks marked and explained, and listed before the passed ones of their function?"""
    html = page(report, FAILED_TRAIN)
    failed = [c for c in results.students[FAILED_TRAIN].checks if not c.passed]
    assert html.count("✗ Échoué") == len(failed) == 4
    for check in failed:
        assert check.check_id in html
        assert str(format_message(check.message)) in html
    assert html.index("train/step_called") < html.index("train/returns_history")  # failed first
    assert "<code>optimizer.step()</code>" in html
    assert "✗ Échoué" not in page(report, PERFECT)


def test_unavailable_curve_and_odd_matrices(
    report: ReportFiles, results: AssignmentResults
) -> None:
    """Does a missing curve read "courbe indisponible", and is a 9x9 or unusable matrix still handled?"""
    crashed = page(report, CRASHED)
    assert "Courbe indisponible pour votre <code>train</code>" in crashed
    assert "<code>confusion_matrix</code>, 9×9 au lieu de 10×10" in crashed
    student = dataclasses.replace(
        results.students[CRASHED],
        figures={"confusion": {"student": [[1, 2], [3]], "reference": None}},
    )
    html = render_student(student, "td_cnn", td_cnn())
    assert "Courbe indisponible" in html
    assert html.count("matrice indisponible") == 2
    assert not tags(html, "img")


def test_manual_questions_are_listed(report: ReportFiles) -> None:
    """Are the free-text questions listed for a TA to grade?"""
    html = page(report, PERFECT)
    assert "à noter par un·e chargé·e de TD" in html
    assert "q_overfitting" in html and "q_lr_choice" in html


def test_summary_lists_frequent_failures_and_links_every_student(
    report: ReportFiles, results: AssignmentResults
) -> None:
    """Does the summary rank the most frequent failed check first and link every student's page?"""
    html = report.summary.read_text(encoding="utf-8")
    table = html[html.index("Vérifications les plus souvent échouées") :]
    first_row = table[table.index("<td>") :].split("</tr>")[0]
    assert "train/matches_reference" in first_row  # failed by 2 of 3, tied first by id order
    assert "67\u202f%" in first_row
    hrefs = {a["href"] for a in tags(html, "a")}
    assert {f"{sid}.html" for sid in results.students} <= hrefs
    failure = results.students[CRASHED].failure
    assert failure is not None and "Exécutions interrompues" in html and failure in html
    assert "3</strong> copies" in html


def test_score_header(report: ReportFiles) -> None:
    """Does a student's page show the id and the score out of the maximum, French decimals?"""
    html = page(report, FAILED_TRAIN)
    assert "bruno_petit" in html
    assert "7,5 / 14 points" in html


def test_no_figure_outlives_rendering(results: AssignmentResults, tmp_path: Path) -> None:
    """Does rendering leave no matplotlib figure open (pyplot would keep every one alive)?"""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    render_reports(results, td_cnn(), tmp_path)
    assert plt.get_fignums() == before


def test_unsafe_student_id_is_refused(results: AssignmentResults, tmp_path: Path) -> None:
    """Is an id that would write outside out_dir refused before anything is written?"""
    student = dataclasses.replace(results.students[PERFECT], student_id="../evil")
    bad = AssignmentResults("td_cnn", {**results.students, "../evil": student})
    with pytest.raises(ValueError, match="cannot name a file"):
        render_reports(bad, td_cnn(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_message_format() -> None:
    """Are backticks rendered as <code> and newlines as <br>, with everything else escaped?"""
    assert str(format_message("a `x < 1`\nb & c")) == "a <code>x &lt; 1</code><br>\nb &amp; c"
    assert str(format_message("une ` seule")) == "une ` seule"


def test_summary_example_message_comes_from_a_notebook_judged_on_its_own(
    results: AssignmentResults,
) -> None:
    """When one copy failing a check is the untouched release (its messages point to the notice at
    the top of its own page), is the summary's example message the one a real attempt got?"""
    from tdkit.reports.html import frequent_failures

    check_id = "train/matches_reference"
    attempts = [
        s
        for s in results.students.values()
        if any(c.check_id == check_id and not c.passed for c in s.checks)
    ]
    assert len(attempts) >= 2
    real = next(c.message for c in attempts[0].checks if c.check_id == check_id)
    untouched = (
        "Non écrit : rien n'a été modifié dans le notebook distribué (voir en haut de la page)."
    )
    students = {s.student_id: s for s in results.students.values() if s not in attempts[1:]}
    # More untouched copies than real attempts: the most frequent message is the notice's pointer.
    for number in range(3):
        checks = [
            dataclasses.replace(c, message=untouched) if c.check_id == check_id else c
            for c in attempts[1].checks
        ]
        students[f"release_{number}"] = dataclasses.replace(
            attempts[1],
            student_id=f"release_{number}",
            checks=checks,
            notice="Rien n'a été modifié.",
        )
    row = next(
        r
        for r in frequent_failures(dataclasses.replace(results, students=students))
        if r.check_id == check_id
    )
    assert row.count == 4
    assert row.example == real


def test_report_verb_renders_again_from_results_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Does 'tdkit report' write every page and the summary from results.json alone, grading nobody,
    and stop with the command to run when results.json is missing or unreadable?"""
    course = copy_course(tmp_path / "course")
    monkeypatch.chdir(course)
    missing = CliRunner().invoke(main, ["report"])
    assert missing.exit_code == 2 and "run 'tdkit grade' first" in missing.output
    reports = course / "reports" / "td_cnn"
    reports.mkdir(parents=True)
    (reports / "results.json").write_text("{not json", encoding="utf-8")
    unreadable = CliRunner().invoke(main, ["report"])
    assert unreadable.exit_code == 2 and "tdkit grade --all" in unreadable.output
    (reports / "results.json").write_bytes(FIXTURE.read_bytes())
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (reports / "html").iterdir())
    assert written == ["alice_martin.html", "bruno_petit.html", "chloe_durand.html", "index.html"]
    assert "Réussi" in (reports / "html" / "alice_martin.html").read_text(encoding="utf-8")
    assert not (course / "gradebook.db").exists() and not (course / "autograded").exists()
