"""nbgrader's formgrader over a course graded by tdkit, in headless Chromium (Playwright).

One course (the shared browser course: the solution, the release, and the hostile markup
submission aimed at the payload listener) graded by `grade_all`; one formgrader server for the
module, started with the course's jupyter_server_config.py as docs/ta.md says, on 127.0.0.1,
stopped at the end whatever happens. Each layer of the review path is tested on its own: the
sanitised notebook (with the policy), the Content-Security-Policy alone (over a notebook that
was not sanitised), and nothing trusted. Screenshots: test-artifacts/formgrader/.
"""

from __future__ import annotations

import base64
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from hostile import READABLE_TEXTS, unsanitised_markup
from markup_watch import active_markup, assert_inert, payload_listener, shown_images, watch
from servers import (
    MARKUP,
    artifacts_dir,
    assert_untrusted,
    chromium,
    formgrader,
    get_json,
)

from tdkit.core.course import Course
from tdkit.trusted.grade import GradeRun


@pytest.fixture(scope="module")
def server(
    browser_course: tuple[Course, GradeRun], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    with formgrader(browser_course[0].root, tmp_path_factory.mktemp("formgrader")) as running:
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
    browser_course: tuple[Course, GradeRun], server: tuple[str, str], browser_context: Any
) -> None:
    """Does formgrader's submissions page list each student as autograded, with tdkit's score?"""
    _, run = browser_course
    base, _ = server
    page = browser_context.new_page()
    page.goto(f"{base}/formgrader/manage_submissions/td_cnn")
    page.wait_for_selector("td.student-id:has-text('sol')")
    page.wait_for_selector("td.student-id:has-text('td')")
    rows = {}
    for row in page.locator("tbody tr").all():
        student = row.locator("td.student-id").inner_text().strip()
        rows[student] = (
            row.locator("td.status").inner_text().strip(),
            row.locator("td.score").inner_text(),
        )
    page.screenshot(
        path=str(artifacts_dir("formgrader") / "manage_submissions.png"), full_page=True
    )
    assert set(rows) == set(run.results.students)
    for student_id, student in run.results.students.items():
        if student.refused:  # not the TD: never run, so never autograded (test_grading says so)
            continue
        status, score = rows[student_id]
        # formgrader counts a submission as autograded when the gradebook timestamp equals
        # submitted/<id>/td_cnn/timestamp.txt (None when absent), as nbgrader autograde records it.
        assert status != "needs autograding", f"{student_id}: 'needs autograding' (timestamp)"
        assert _points(score)[0] == pytest.approx(student.score, abs=0.01), student_id
    page.close()


def test_open_a_submission_shows_tdkit_cell_scores(
    browser_course: tuple[Course, GradeRun], server: tuple[str, str], browser_context: Any
) -> None:
    """From the gradebook's list, does opening the solution's submission show the notebook with
    the cell scores tdkit wrote (auto scores add up to the tdkit score)?"""
    _, run = browser_course
    base, _ = server
    page = browser_context.new_page()
    page.goto(f"{base}/formgrader/gradebook/td_cnn/td_cnn")
    page.wait_for_selector("a.name-hidden")  # "Submission #1": names are hidden by default
    page.screenshot(
        path=str(artifacts_dir("formgrader") / "gradebook_submissions.png"), full_page=True
    )
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


# formgrade's nbconvert template asks for MathJax on this CDN (the policy blocks it); data: images.
TEMPLATE_OWN = ("data:", "https://cdnjs.cloudflare.com/ajax/libs/mathjax/")


def _submission(server: tuple[str, str], student: str) -> str:
    base, token = server
    notebooks = get_json(f"{base}/formgrader/api/submitted_notebooks/td_cnn/td_cnn?token={token}")
    return f"{base}/formgrader/submissions/{next(n['id'] for n in notebooks if n['student'] == student)}/"


def _open_submission(
    context: Any, server: tuple[str, str], student: str
) -> tuple[Any, Any, list[str]]:
    """The submission page once formgrader's own scripts have loaded the cell scores from its API."""
    page = context.new_page()
    seen = watch(page)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(_submission(server, student))
    page.wait_for_selector("input.score#test_train[placeholder]")
    return page, seen, console


def test_hostile_submission_is_inert_and_readable(
    server: tuple[str, str], browser_context: Any
) -> None:
    """Does formgrader's view of the hostile markup submission run none of its payloads and request
    nothing beyond the server, while the student's answers, outputs and images stay readable?"""
    base, _ = server
    page, seen, _ = _open_submission(browser_context, server, MARKUP)
    assert_inert(page, seen, (f"{base}/", *TEMPLATE_OWN), "formgrader, hostile submission")
    assert active_markup(page, "#notebook-container") == []
    text = page.inner_text("#notebook-container")
    assert [t for t in READABLE_TEXTS if t not in text] == []
    assert "Sortie JavaScript supprimée" in text
    # An attached PNG in each of 3 answers and in the added cell, a PNG output, the SVG output as an image.
    assert shown_images(page, "#notebook-container") >= 6
    page.screenshot(path=str(artifacts_dir("formgrader") / "submission_markup.png"), full_page=True)
    page.close()


def test_policy_alone_stops_an_unsanitised_notebook(
    browser_course: tuple[Course, GradeRun], server: tuple[str, str], browser_context: Any
) -> None:
    """With the autograded notebook left unsanitised (layer 1 bypassed), does formgrader's
    Content-Security-Policy alone stop every script, handler and remote load of the student?"""
    course, _ = browser_course
    base, _ = server
    path = course.autograded_notebook(MARKUP)
    sanitised = path.read_bytes()
    raw = unsanitised_markup(nbformat.reads(sanitised, as_version=4), payload_listener().url)
    nbformat.write(raw, path)
    try:
        page, seen, console = _open_submission(browser_context, server, MARKUP)
        html = page.content()
        assert (
            "<script>(window.top.__tdkit_pwned" in html and "onerror=" in html
        )  # the markup did reach the page
        assert_inert(page, seen, (f"{base}/", *TEMPLATE_OWN), "formgrader, unsanitised notebook")
        assert any("Content Security Policy" in line for line in console), console
        assert any(url.startswith(payload_listener().url) for url in seen.blocked()), seen.blocked()
        page.close()
    finally:
        path.write_bytes(sanitised)


FORMGRADER_PAGES = (
    "manage_assignments",
    "gradebook",
    "gradebook/td_cnn",
    "gradebook/td_cnn/td_cnn",
    "manage_submissions/td_cnn",
    "manage_students",
    "manage_students/sol",
    "manage_students/sol/td_cnn",
)


def test_every_formgrader_page_sends_the_policy_and_still_works(
    server: tuple[str, str], browser_context: Any
) -> None:
    """Does every formgrader page send a policy without 'unsafe-inline' or 'unsafe-eval' scripts,
    and do formgrader's own scripts all run under it (no violation reported)?"""
    base, token = server
    pages = [f"{base}/formgrader/{name}" for name in FORMGRADER_PAGES] + [
        _submission(server, "sol")
    ]
    for url in pages:
        with urllib.request.urlopen(f"{url}?token={token}") as reply:
            policy = reply.headers.get("Content-Security-Policy", "")
        scripts = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
        assert (
            "'unsafe-inline'" not in scripts
            and "'unsafe-eval'" not in scripts
            and "*" not in scripts
        ), (url, policy)
        assert "default-src 'none'" in policy and "base-uri 'none'" in policy, (url, policy)
    for url in pages:
        page = browser_context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))  # noqa: B023 - used before the next page
        page.goto(url)
        page.wait_for_load_state("networkidle")
        # The only thing the policy blocks on formgrader's own pages: MathJax from its CDN.
        blocked = [
            line
            for line in console
            if "Content Security Policy" in line and TEMPLATE_OWN[1] not in line
        ]
        assert blocked == [], url
        page.close()


def test_no_student_notebook_is_trusted(
    browser_course: tuple[Course, GradeRun], server: tuple[str, str]
) -> None:
    """Does the Jupyter server that runs formgrader (and that JupyterLab reads notebooks from) see
    every autograded notebook as untrusted, with no signature or trust flag written by tdkit?"""
    course, run = browser_course
    base, token = server
    for student_id, student in run.results.students.items():
        if not student.refused:  # a refused notebook is never run: it has no autograded notebook
            assert_untrusted(base, token, course, student_id)


def test_policy_hashes_only_what_comes_before_the_notebook() -> None:
    """Are formgrader's own inline script and handler allowed by hash, and nothing from the
    rendered notebook on (nor anything at all when the page could not be read whole)?"""
    import hashlib

    from tdkit.trusted.formgrader_csp import policy

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    page = (
        '<script>var base_url = "/";</script><span onclick="toggle_name(true);"></span>'
        '<div id="notebook-container"><script>steal()</script><img onerror="steal()"></div>'
    )
    scripts = next(
        d for d in policy(page, "http://h:1", "/").split("; ") if d.startswith("script-src")
    )
    assert scripts.split()[1:] == [
        "http://h:1/formgrader/static/",
        *sorted([sha('var base_url = "/";'), sha("toggle_name(true);")]),
        "'unsafe-hashes'",
    ]
    assert sha("steal()") not in scripts
    unread = next(
        d for d in policy(None, "http://h:1", "/").split("; ") if d.startswith("script-src")
    )
    assert unread == "script-src http://h:1/formgrader/static/"
