"""The autograded notebook opened in JupyterLab's notebook view, in headless Chromium (Playwright).

The shared browser course (the solution, the release, and the hostile markup submission aimed at
the payload listener) graded by `grade_all`; one JupyterLab for the module, started as docs/ta.md
tells a TA (`jupyter lab --config=jupyter_server_config.py` in the course directory), on
127.0.0.1, stopped at the end whatever happens. formgrader's policy covers only `/formgrader/`:
in Lab the notebook is held by tdkit's sanitising (layer 1) and by being untrusted (layer 3),
each tested here. Screenshots: test-artifacts/jupyterlab/.
"""

from __future__ import annotations

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
    jupyterlab,
)

from tdkit.core.course import Course
from tdkit.trusted.grade import GradeRun

NOTEBOOK = ".jp-NotebookPanel .jp-Notebook"
# Lab's own inline images and workers, the notebook's inline images, and an attachment's name that
# Lab sets as an image's address before it resolves it to the attached data (never leaves the browser).
LAB_OWN = ("data:", "blob:", "attachment:")


@pytest.fixture(scope="module")
def lab(
    browser_course: tuple[Course, GradeRun], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    with jupyterlab(browser_course[0].root, tmp_path_factory.mktemp("jupyterlab")) as running:
        yield running


def test_lab_started_as_the_readme_says_keeps_formgrader_policy(lab: tuple[str, str]) -> None:
    """Started with the course's --config, does JupyterLab serve its own page without tdkit's policy
    while formgrader's pages on the same server still get it?"""
    base, token = lab
    with urllib.request.urlopen(f"{base}/formgrader/manage_assignments?token={token}") as reply:
        assert "default-src 'none'" in reply.headers.get("Content-Security-Policy", "")
    with urllib.request.urlopen(f"{base}/lab?token={token}") as reply:
        assert reply.status == 200 and "default-src" not in reply.headers.get(
            "Content-Security-Policy", ""
        )


def _open_in_lab(context: Any, lab: tuple[str, str], course: Course) -> tuple[Any, Any]:
    """The hostile submission's autograded notebook in Lab's notebook view, once every cell is on
    the page and every output and Markdown cell rendered (a fresh workspace each time)."""
    base, token = lab
    path = course.autograded_notebook(MARKUP)
    cells = nbformat.read(path, as_version=4).cells
    page = context.new_page()
    seen = watch(page)
    page.goto(f"{base}/lab/tree/{path.relative_to(course.root).as_posix()}?reset&token={token}")
    markdown = sum(cell.cell_type == "markdown" for cell in cells)
    with_outputs = sum(
        bool(cell.get("outputs")) for cell in cells
    )  # Lab merges successive stream outputs
    page.wait_for_function(
        """([selector, cells, markdown, withOutputs]) => {
            const nb = document.querySelector(selector);
            return nb !== null && nb.querySelectorAll('.jp-Cell').length === cells
                && nb.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown').length === markdown
                && [...nb.querySelectorAll('.jp-CodeCell')].filter(c => c.querySelector('.jp-OutputArea-output')).length
                   === withOutputs;
        }""",
        arg=[NOTEBOOK, len(cells), markdown, with_outputs],
    )
    return page, seen


def test_hostile_submission_is_inert_and_readable_in_lab(
    browser_course: tuple[Course, GradeRun], lab: tuple[str, str], browser_context: Any
) -> None:
    """Does JupyterLab's view of the hostile markup submission run none of its payloads and request
    nothing beyond the server, while the student's answers, outputs and images stay readable?"""
    course, _ = browser_course
    base, _ = lab
    page, seen = _open_in_lab(browser_context, lab, course)
    assert_inert(page, seen, (f"{base}/", *LAB_OWN), "JupyterLab, hostile submission")
    # Lab turns every URL in stream and error text into a link, data: ones included: the only thing
    # on the page that could act, and only when clicked; Chromium then opens nothing.
    autolinks = page.locator(".jp-RenderedText a[href^='data:']")
    active = active_markup(page, NOTEBOOK)
    assert len(active) == autolinks.count() and all(
        a.startswith("a[href]=data:text/html") for a in active
    ), active
    autolinks.first.scroll_into_view_if_needed()
    autolinks.first.click()
    assert_inert(
        page, seen, (f"{base}/", *LAB_OWN), "JupyterLab, a data: link in an output clicked"
    )
    assert browser_context.pages == [page]
    text = page.inner_text(NOTEBOOK)
    assert [t for t in READABLE_TEXTS if t not in text] == []
    assert "Sortie JavaScript supprimée" in text
    # An attached PNG in each of 3 answers and in the added cell, a PNG output, the SVG output as an image.
    assert shown_images(page, NOTEBOOK) >= 6
    page.screenshot(path=str(artifacts_dir("jupyterlab") / "notebook_markup.png"), full_page=True)
    page.close()


def test_saving_in_lab_does_not_trust_the_notebook(
    browser_course: tuple[Course, GradeRun], lab: tuple[str, str], browser_context: Any
) -> None:
    """After a TA opens the hostile submission in Lab and saves it, is it still unsigned and
    untrusted for the Jupyter server?"""
    course, _ = browser_course
    base, token = lab
    path = course.autograded_notebook(MARKUP)
    graded_bytes = path.read_bytes()
    try:
        page, _ = _open_in_lab(browser_context, lab, course)
        with page.expect_response(
            lambda r: r.request.method == "PUT" and "/api/contents/autograded/" in r.url
        ) as put:
            page.keyboard.press("Control+s")
        assert put.value.ok, put.value.status
        page.close()
        assert_untrusted(base, token, course, MARKUP)
    finally:
        path.write_bytes(graded_bytes)


# What JupyterLab's own sanitiser lets through from an untrusted notebook: passive loads (remote
# images, a video poster, an inline style's background), which layer 1 removes.
LAB_PASSIVE_LOADS = {"GET /img-remote", "GET /md-image", "GET /poster", "GET /css-inline"}


def test_untrusted_alone_in_lab_runs_no_script(
    browser_course: tuple[Course, GradeRun], lab: tuple[str, str], browser_context: Any
) -> None:
    """With the autograded notebook left unsanitised (layer 1 bypassed), does JupyterLab, which
    renders it untrusted, run none of the student's scripts and handlers nor open a dialog, its
    only calls out being the passive loads its sanitiser keeps?"""
    course, _ = browser_course
    path = course.autograded_notebook(MARKUP)
    graded_bytes = path.read_bytes()
    listener = payload_listener()
    nbformat.write(
        unsanitised_markup(nbformat.reads(graded_bytes, as_version=4), listener.url), path
    )
    try:
        page, seen = _open_in_lab(browser_context, lab, course)
        page.wait_for_load_state("networkidle")
        markers = [
            frame.evaluate("() => window.__tdkit_pwned || null")
            for frame in page.frames
            if not frame.is_detached()
        ]
        page.screenshot(
            path=str(artifacts_dir("jupyterlab") / "notebook_unsanitised.png"), full_page=True
        )
        page.close()
        assert [m for m in markers if m] == [], f"student scripts ran in Lab: {markers}"
        assert seen.dialogs == []
        assert listener.hits and set(listener.hits) <= LAB_PASSIVE_LOADS, listener.hits
    finally:
        path.write_bytes(graded_bytes)
        listener.hits.clear()
