"""The static pages a grader opens, in headless Chromium. tdkit's HTML reports (class summary,
per-student feedback): every image loads, links lead to the students' pages, and the hostile
markup submission's text (its error message and traceback carry every payload) runs nothing.
nbgrader's own feedback HTML (`nbgrader generate_feedback`) and the autograded notebook exported
by nbconvert's lab and classic templates (`jupyter nbconvert --to html`): files opened without
any policy, which only the sanitised notebook (layer 1) protects. Screenshots:
test-artifacts/reports/ and test-artifacts/feedback/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hostile import READABLE_TEXTS
from markup_watch import active_markup, assert_inert, shown_images, watch
from nbconvert import HTMLExporter
from servers import (
    MARKUP,
    artifacts_dir,
    script_env,
)

from tdkit.core.course import Course
from tdkit.trusted.grade import GradeRun


def _images(page: Any) -> list[dict[str, Any]]:
    """Every <img> once the page has loaded: whether it decoded, and its size."""
    page.wait_for_load_state("load")
    return page.eval_on_selector_all(
        "img",
        "els => els.map(e => ({src: e.currentSrc.slice(0, 60), complete: e.complete, width: e.naturalWidth,"
        " height: e.naturalHeight, alt: e.alt}))",
    )


def _open(context: Any, url: str) -> tuple[Any, list[str]]:
    page = context.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url[:100]))
    page.on("pageerror", lambda error: failed.append(f"script error: {error}"))
    page.goto(url)
    return page, failed


def _assert_all_loaded(images: list[dict[str, Any]], failed: list[str], what: str) -> None:
    assert images, f"{what}: no image at all"
    broken = [
        img for img in images if not (img["complete"] and img["width"] > 0 and img["height"] > 0)
    ]
    assert broken == [], f"{what}: images that did not load: {broken}"
    assert failed == [], f"{what}: failed requests: {failed}"


def test_class_summary_images_load_and_link_to_students(
    browser_course: tuple[Course, GradeRun], browser_context: Any
) -> None:
    """Does the class summary show its charts, and lead to each student's page?"""
    course, run = browser_course
    page, failed = _open(browser_context, (course.reports / "html" / "index.html").as_uri())
    images = _images(page)
    page.screenshot(path=str(artifacts_dir("reports") / "index.png"), full_page=True)
    _assert_all_loaded(images, failed, "index.html")
    text = page.inner_text("body")
    for student_id in run.results.students:
        assert student_id in text
    page.locator("a[href='sol.html']").first.click()
    page.wait_for_url("**/sol.html")
    assert "sol" in page.inner_text("body")
    page.close()


@pytest.mark.parametrize("student_id", ["sol", "td"])
def test_feedback_report_images_load(
    browser_course: tuple[Course, GradeRun], browser_context: Any, student_id: str
) -> None:
    """Does a student's feedback page show every figure (learning curves, confusion matrices)?"""
    course, run = browser_course
    page, failed = _open(browser_context, (course.reports / "html" / f"{student_id}.html").as_uri())
    images = _images(page)
    page.screenshot(path=str(artifacts_dir("reports") / f"{student_id}.png"), full_page=True)
    _assert_all_loaded(images, failed, f"{student_id}.html")
    text = page.inner_text("body")
    failing = [c for c in run.results.students[student_id].checks if not c.passed]
    for check in failing:  # every failed check is named on the page
        assert check.check_id in text, check.check_id
    page.close()


def test_hostile_markup_runs_nothing_on_tdkit_pages(
    browser_course: tuple[Course, GradeRun], browser_context: Any
) -> None:
    """Do the class summary and the hostile submission's feedback page (its error message and
    traceback carry every payload) run none of them and request nothing beyond their own files,
    the student's error still readable?"""
    course, _ = browser_course
    for name in ("index.html", f"{MARKUP}.html"):
        page = browser_context.new_page()
        seen = watch(page)
        page.goto((course.reports / "html" / name).as_uri())
        assert_inert(page, seen, ("file://", "data:"), name)
        assert active_markup(page, "body") == [], name
        page.screenshot(path=str(artifacts_dir("reports") / f"inert_{name}.png"), full_page=True)
        if name != "index.html":
            assert "LISIBLE erreur" in page.inner_text("body")
        page.close()


# The templates' own scripts (jQuery, require.js, MathJax) come from this CDN; nothing else may be asked for.
OWN = ("file://", "data:", "https://cdnjs.cloudflare.com/ajax/libs/")


def _check(context: Any, page_file: Path, name: str) -> None:
    page = context.new_page()
    seen = watch(page)
    page.goto(page_file.as_uri())
    assert_inert(page, seen, OWN, name)
    assert active_markup(page, "body") == [], name
    text = page.inner_text("body")
    assert [t for t in READABLE_TEXTS if t not in text] == [], name
    assert "Sortie JavaScript supprimée" in text
    assert shown_images(page, "body") >= 6, (
        name
    )  # 4 attached PNGs, a PNG output, the SVG as an image
    page.screenshot(path=str(artifacts_dir("feedback") / f"{name}.png"), full_page=True)
    page.close()


def test_nbgrader_feedback_is_inert_and_readable(
    browser_course: tuple[Course, GradeRun], browser_context: Any
) -> None:
    """Does the feedback page `nbgrader generate_feedback` writes for the hostile submission run
    none of its payloads, request nothing, and show the student's text and images?"""
    course, _ = browser_course
    nbgrader = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    done = subprocess.run(
        [nbgrader, "generate_feedback", "td_cnn", f"--student={MARKUP}", "--force"],
        cwd=course.root,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check(
        browser_context,
        course.root / "feedback" / MARKUP / "td_cnn" / "td_cnn.html",
        "nbgrader_feedback",
    )


@pytest.mark.parametrize("template", ["lab", "classic"])
def test_nbconvert_export_is_inert_and_readable(
    browser_course: tuple[Course, GradeRun], browser_context: Any, tmp_path: Path, template: str
) -> None:
    """Does the autograded notebook exported to HTML by nbconvert run none of the student's
    payloads, request nothing, and show the student's text and images?"""
    course, _ = browser_course
    html, _ = HTMLExporter(template_name=template).from_filename(
        str(course.autograded_notebook(MARKUP))
    )
    page_file = tmp_path / f"{template}.html"
    page_file.write_text(html, encoding="utf-8")
    _check(browser_context, page_file, f"nbconvert_{template}")
