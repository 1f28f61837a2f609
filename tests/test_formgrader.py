"""nbgrader's formgrader over a course graded by tdkit, in headless Chromium (Playwright).

One course, two submissions graded by `grade_all`; one formgrader server for the module, on
127.0.0.1, stopped at the end whatever happens. Screenshots: test-artifacts/formgrader/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from servers import artifacts_dir, chromium, formgrader, require_browser, shared_graded_course

from tdkit.course import Course
from tdkit.grade import GradeRun


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    require_browser()
    return shared_graded_course(tmp_path_factory)


@pytest.fixture(scope="module")
def server(graded: tuple[Course, GradeRun], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with formgrader(graded[0].root, tmp_path_factory.mktemp("formgrader")) as running:
        yield running


@pytest.fixture(scope="module")
def browser_context(server: tuple[str, str]) -> Iterator[Any]:
    base, token = server
    with chromium() as context:
        page = context.new_page()
        page.goto(f"{base}/formgrader?token={token}")  # the token sets the login cookie
        page.close()
        yield context


def _points(text: str) -> tuple[float, float]:
    match = re.fullmatch(r"\s*([\d.]+)\s*/\s*([\d.]+)\s*", text)
    assert match, f"not a 'score / max' cell: {text!r}"
    return float(match.group(1)), float(match.group(2))


def test_manage_submissions_shows_tdkit_scores(
    graded: tuple[Course, GradeRun], server: tuple[str, str], browser_context: Any
) -> None:
    """Does formgrader's submissions page list each student as autograded, with tdkit's score?"""
    _, run = graded
    base, _ = server
    page = browser_context.new_page()
    page.goto(f"{base}/formgrader/manage_submissions/td_cnn")
    page.wait_for_selector("td.student-id:has-text('sol')")
    page.wait_for_selector("td.student-id:has-text('td')")
    rows = {}
    for row in page.locator("tbody tr").all():
        student = row.locator("td.student-id").inner_text().strip()
        rows[student] = (row.locator("td.status").inner_text().strip(), row.locator("td.score").inner_text())
    page.screenshot(path=str(artifacts_dir("formgrader") / "manage_submissions.png"), full_page=True)
    assert set(rows) == set(run.results.students)
    for student_id, student in run.results.students.items():
        status, score = rows[student_id]
        # formgrader counts a submission as autograded when the gradebook timestamp equals
        # submitted/<id>/td_cnn/timestamp.txt (None when absent), as nbgrader autograde records it.
        assert status != "needs autograding", f"{student_id}: 'needs autograding' (timestamp)"
        assert _points(score)[0] == pytest.approx(student.score, abs=0.01), student_id
    page.close()


def test_open_a_submission_shows_tdkit_cell_scores(
    graded: tuple[Course, GradeRun], server: tuple[str, str], browser_context: Any
) -> None:
    """From the gradebook's list, does opening the solution's submission show the notebook with
    the cell scores tdkit wrote (auto scores add up to the tdkit score)?"""
    _, run = graded
    base, _ = server
    page = browser_context.new_page()
    page.goto(f"{base}/formgrader/gradebook/td_cnn/td_cnn")
    page.wait_for_selector("a.name-hidden")  # "Submission #1": names are hidden by default
    page.screenshot(path=str(artifacts_dir("formgrader") / "gradebook_submissions.png"), full_page=True)
    href = page.locator("a.name-shown", has_text="sol").get_attribute("href")
    assert href and "/formgrader/submissions/" in href
    page.goto(f"{base}{href}?index=0")
    # Every cell's scores come in one API call: once one autograded cell shows its score, all do.
    page.wait_for_selector("input.score#test_train[placeholder]")
    auto = page.eval_on_selector_all(
        "input.score", "els => els.map(e => [e.id, parseFloat(e.getAttribute('placeholder')) || 0])"
    )
    body = page.inner_text("body")
    page.locator("input.score#test_train").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir("formgrader") / "submission_sol.png"))
    page.close()
    assert "Submission" in body and "td_cnn" in body
    scores = dict(auto)
    assert "test_train" in scores, sorted(scores)
    assert sum(scores.values()) == pytest.approx(run.results.students["sol"].score, abs=0.01)
