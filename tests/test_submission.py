"""Preparing a submission for its run: what nbgrader's sanitising gives back must stay a valid notebook."""

from __future__ import annotations

import warnings

import nbformat
from conftest import REPO
from nbformat.warnings import MissingIDFieldWarning

from tdkit.core.course import Course
from tdkit.intake.submission import prepare_submission

SOLVED = REPO / "examples" / "td_cnn" / "submissions" / "alice_solution.ipynb"


def test_restored_test_cells_get_cell_ids(released_course: Course) -> None:
    """A student deleted two test cells: nbgrader puts them back; does every cell of the prepared
    notebook carry a distinct id (required by nbformat 4.5: a warning today, an error later), the
    same ids on every preparation?"""
    nb = nbformat.read(SOLVED, as_version=4)
    deleted = {"test_predict", "test_confusion_matrix"}
    nb.cells = [
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in deleted
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingIDFieldWarning)
        profile = released_course.definition().profile(None)
        first = prepare_submission(released_course, nbformat.from_dict(nb), "s", profile)
        again = prepare_submission(released_course, nbformat.from_dict(nb), "s", profile)
    restored = [c for c in first.cells if c.metadata.get("nbgrader", {}).get("grade_id") in deleted]
    assert len(restored) == 2
    ids = [c.get("id") for c in first.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    assert ids == [c.get("id") for c in again.cells]
    nbformat.validate(first)
