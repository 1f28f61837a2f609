"""Layer 1 of the review path on its own: what ``tdkit.trusted.sanitize`` leaves of hostile notebooks.

Fixtures are the real hostile notebook of tests/adversarial (every class of payload) with the
outputs a kernel gives for it, built here without running it; the end-to-end proof (graded,
then opened in Chromium) is in test_formgrader.py, test_feedback_html.py and the adversarial batch.
"""

from __future__ import annotations

import base64
import json
import re

import nbformat
import pytest
from conftest import REPO
from hostile import (
    READABLE,
    TINY_PNG,
    hostile_markup,
    markup_markdown,
    markup_payloads,
    markup_svg,
    payload_js,
)
from nbgrader.utils import is_locked

from tdkit.trusted.sanitize import (
    JS_NOTE,
    clean_html,
    neutralise_markdown,
    release_text,
    sanitise_notebook,
    sanitise_output,
)

LISTENER = "http://127.0.0.1:9"
# What may never be left in anything a browser renders as HTML.
ACTIVE = re.compile(
    r"<(script|iframe|object|embed|base|meta|link|style|form|svg)\b|\son\w+\s*=|javascript:|"
    r"data:text|127\.0\.0\.1:9/(?!js/)",
    re.IGNORECASE,
)


def _outputs() -> list[nbformat.NotebookNode]:
    """The outputs the hostile cell produces in a kernel (IPython's display formats)."""
    html = markup_payloads(LISTENER)
    new = nbformat.v4.new_output
    return [
        new(
            "display_data",
            data={"text/html": html, "text/plain": "<IPython.core.display.HTML object>"},
        ),
        new(
            "display_data",
            data={"application/javascript": payload_js(LISTENER, "js"), "text/plain": "js"},
        ),
        new("display_data", data={"image/svg+xml": markup_svg(LISTENER), "text/plain": "svg"}),
        new(
            "display_data",
            data={"text/markdown": markup_markdown(LISTENER, "sortie"), "text/plain": "md"},
        ),
        new(
            "display_data",
            data={"image/png": TINY_PNG, "text/plain": "png"},
            metadata={"image/png": {"width": 8}},
        ),
        new(
            "display_data",
            data={"text/html": html, "application/vnd.jupyter.widget-view+json": {"model_id": "x"}},
        ),
        new("display_data", data={"text/html": html}, metadata={"text/html": {"isolated": True}}),
        new("stream", name="stdout", text=f"{READABLE} {html}"),
        new("error", ename="ValueError", evalue=html, traceback=[html]),
    ]


@pytest.fixture
def notebook() -> nbformat.NotebookNode:
    nb = hostile_markup(LISTENER)
    nb.cells[-1].outputs = _outputs()
    nb.cells[-1].metadata["trusted"] = True
    return sanitise_notebook(nb)


def test_no_active_markup_is_left_where_html_is_rendered(notebook: nbformat.NotebookNode) -> None:
    """Does no HTML or SVG output, no Markdown source or output, no raw cell keep a script, an
    event handler, a javascript:/data: URL, a frame, a base, a meta, a stylesheet or a remote load?"""
    data = [o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    html = [d["text/html"] for d in data if "text/html" in d]
    assert (
        len(html) == 4
    )  # the HTML output, the SVG as an image, the widget's and the 'isolated' HTML
    for markup in html:
        assert not ACTIVE.search(
            re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", markup)
        ), markup[:300]
    # Markdown (answers, added cells, outputs) and raw cells: no tag, no link or image syntax left at all.
    markdown = [d["text/markdown"] for d in data if "text/markdown" in d]
    markdown += [c.source for c in notebook.cells if c.cell_type == "markdown" and not is_locked(c)]
    assert len(markdown) >= 5  # the Markdown output, 3 answers, the added Markdown cell
    for source in markdown:
        assert "<" not in source and "[" not in source.replace("![capture](", ""), source[:200]
    raw = [c.source for c in notebook.cells if c.cell_type == "raw"]
    assert raw and all("<" not in source for source in raw)


def test_javascript_is_dropped_with_a_visible_note() -> None:
    """Is a JavaScript output replaced by a French note naming it, and a widget view by another?"""
    outputs = sanitise_output(
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(1)"})
    )
    assert [o.data["text/plain"] for o in outputs] == [
        JS_NOTE.format(types="application/javascript")
    ]
    widget = sanitise_output(
        nbformat.v4.new_output(
            "display_data", data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "w"}
        )
    )
    assert widget[0].data == {"text/plain": "w"} and "widget-view" in widget[1].data["text/plain"]


def test_text_and_images_stay_readable(notebook: nbformat.NotebookNode) -> None:
    """Does the student's text survive everywhere (answers, HTML, Markdown, streams, errors), with
    the PNG output, the attached PNG and the SVG (as an image) kept?"""
    dumped = json.dumps(notebook)
    for where in (
        "answer_examples",
        "answer_accuracy",
        "answer_bricolage",
        "cellule_ajoutee",
        "sortie",
        "html",
    ):
        assert f"{READABLE} {where}" in dumped, where
    last = notebook.cells[-1].outputs
    assert any(o.get("data", {}).get("image/png") == TINY_PNG for o in last)
    assert any(
        "data:image/svg+xml;base64," in str(o.get("data", {}).get("text/html", "")) for o in last
    )
    assert (
        last[-2].output_type == "stream" and f"{READABLE} <p>" in last[-2].text
    )  # shown escaped, never parsed
    assert last[-1].output_type == "error" and "<script>" in last[-1].evalue
    answers = [
        c
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("answer_")
    ]
    assert answers and all(
        set(c.attachments) == {"capture.png"} for c in answers
    )  # the SVG attachment is dropped
    assert all("![capture](attachment:capture.png)" in c.source for c in answers)


def test_student_metadata_is_dropped(notebook: nbformat.NotebookNode) -> None:
    """Are widget state, 'trusted', a signature and every cell key but nbgrader's gone?"""
    assert set(notebook.metadata) <= {"kernelspec", "language_info"}
    assert all(set(cell.metadata) <= {"nbgrader"} for cell in notebook.cells)
    assert all(
        set(o.get("metadata", {})) <= {"image/png"}
        for c in notebook.cells
        for o in c.get("outputs", [])
    )
    nbformat.validate(notebook)


def test_instructor_text_is_left_as_written() -> None:
    """Are the release's own Markdown cells (which nbgrader does not lock) kept as the instructor
    wrote them, while the same cell edited by the student is escaped?"""
    nb = hostile_markup(LISTENER)
    instructor = release_text(REPO / "release" / "td_cnn" / "td_cnn.ipynb")
    prose = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source in instructor
    ]
    assert any(
        "<" in nb.cells[i].source or "[" in nb.cells[i].source for i in prose
    )  # HTML or links to keep
    nb.cells[prose[0]].source += "\n<img src=x onerror=alert(1)>"
    after = sanitise_notebook(nb, instructor)
    assert [after.cells[i].source for i in prose[1:]] == [nb.cells[i].source for i in prose[1:]]
    assert "&lt;img src=x" in after.cells[prose[0]].source


def test_sanitising_twice_changes_nothing(notebook: nbformat.NotebookNode) -> None:
    """Is a sanitised notebook a fixed point (formgrader may get a notebook graded twice)?"""
    assert sanitise_notebook(notebook) == notebook


@pytest.mark.parametrize(
    "markup",
    [
        '<img src="x" onerror="alert(1)">',
        "<a href='javascript:alert(1)'>x</a>",
        "<svg><script>alert(1)</script></svg>",
        f'<img src="{LISTENER}/remote.png">',
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        f'<div style="background:url({LISTENER}/x)">x</div>',
        f'<iframe srcdoc="<script>alert(1)</script>" src="{LISTENER}">',
    ],
)
def test_html_allow_list(markup: str) -> None:
    """Does the HTML sanitiser strip this payload (and keep a plain web link and an inline PNG)?"""
    assert not ACTIVE.search(clean_html(markup).replace(LISTENER + "/js/", ""))
    kept = clean_html(
        f'<a href="https://example.org">lien</a><img src="data:image/png;base64,{TINY_PNG}">'
    )
    assert 'href="https://example.org"' in kept and f"base64,{TINY_PNG}" in kept


def test_markdown_keeps_only_checked_attachments() -> None:
    """Does an image reference survive only for an attachment that was kept, everything else escaped?"""
    source = "![a](attachment:a.png) ![b](attachment:b.svg) [x](javascript:y) <b>z</b>"
    assert neutralise_markdown(source, frozenset({"a.png"})) == (
        "![a](attachment:a.png) !&#91;b](attachment:b.svg) &#91;x](javascript:y) &lt;b>z&lt;/b>"
    )


def test_invalid_images_are_dropped_with_a_note() -> None:
    """Is an 'image/png' that is not a PNG (or an attachment that lies about its type) dropped?"""
    fake = base64.b64encode(b"<svg onload=alert(1)>").decode()
    outputs = sanitise_output(nbformat.v4.new_output("display_data", data={"image/png": fake}))
    assert len(outputs) == 1 and "Image invalide" in outputs[0].data["text/plain"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("![x](attachment:x.png)")])
    nb.cells[0].attachments = {"x.png": {"image/png": fake}}
    cell = sanitise_notebook(nb).cells[0]
    assert "attachments" not in cell and cell.source == "!&#91;x](attachment:x.png)"
