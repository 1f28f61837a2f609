"""The hostile markup submission as a grader sees it outside formgrader, in headless Chromium:
nbgrader's own feedback HTML (`nbgrader generate_feedback`), and the autograded notebook
exported with nbconvert's lab and classic templates (`jupyter nbconvert --to html`). These are
files, opened without any policy: only the sanitised notebook (layer 1) protects them.

The shared browser course (tests/servers.py), graded once for the run. Screenshots:
test-artifacts/feedback/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import READABLE_TEXTS
from markup_watch import active_markup, assert_inert, shown_images, watch
from nbconvert import HTMLExporter
from servers import (
    MARKUP,
    artifacts_dir,
    chromium,
    require_browser,
    script_env,
    shared_graded_course,
)

from tdkit.course import Course
from tdkit.grade import GradeRun

# The templates' own scripts (jQuery, require.js, MathJax) come from this CDN; nothing else may be asked for.
OWN = ("file://", "data:", "https://cdnjs.cloudflare.com/ajax/libs/")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    require_browser()
    return shared_graded_course(tmp_path_factory)


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    with chromium() as context:
        yield context


def _check(context: Any, page_file: Path, name: str) -> None:
    page = context.new_page()
    seen = watch(page)
    page.goto(page_file.as_uri())
    assert_inert(page, seen, OWN, name)
    assert active_markup(page, "body") == [], name
    text = page.inner_text("body")
    assert [t for t in READABLE_TEXTS if t not in text] == [], name
    assert "Sortie JavaScript supprimée" in text
    assert shown_images(page, "body") >= 6, name  # 4 attached PNGs, a PNG output, the SVG as an image
    page.screenshot(path=str(artifacts_dir("feedback") / f"{name}.png"), full_page=True)
    page.close()


def test_nbgrader_feedback_is_inert_and_readable(graded: tuple[Course, GradeRun], browser_context: Any) -> None:
    """Does the feedback page `nbgrader generate_feedback` writes for the hostile submission run
    none of its payloads, request nothing, and show the student's text and images?"""
    course, _ = graded
    nbgrader = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    done = subprocess.run([nbgrader, "generate_feedback", "td_cnn", f"--student={MARKUP}", "--force"],
                          cwd=course.root, env=script_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    _check(browser_context, course.root / "feedback" / MARKUP / "td_cnn" / "td_cnn.html", "nbgrader_feedback")


@pytest.mark.parametrize("template", ["lab", "classic"])
def test_nbconvert_export_is_inert_and_readable(
    graded: tuple[Course, GradeRun], browser_context: Any, tmp_path: Path, template: str
) -> None:
    """Does the autograded notebook exported to HTML by nbconvert run none of the student's
    payloads, request nothing, and show the student's text and images?"""
    course, _ = graded
    html, _ = HTMLExporter(template_name=template).from_filename(str(course.autograded_notebook(MARKUP)))
    page_file = tmp_path / f"{template}.html"
    page_file.write_text(html, encoding="utf-8")
    _check(browser_context, page_file, f"nbconvert_{template}")
