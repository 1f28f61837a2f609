"""A notebook that is not the distributed TD, or the TD left as distributed, is named as such.

Fixtures: last year's TD (``/work/shared/TD_seed.md`` converted with jupytext, no nbgrader
cells), another assignment's nbgrader notebook, the release itself, and correct submissions
that must be graded as usual.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat.notebooknode import NotebookNode

from tdkit.intake.identify import NotTheAssignment, identify, require_assignment

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "release" / "td_cnn" / "td_cnn.ipynb"
NOT_TD = ROOT / "tests" / "files" / "not_td"
EXAMPLES = ROOT / "examples" / "td_cnn" / "submissions"
GRADED_CELLS = ("train", "predict", "activation_maps", "answer_bricolage")


def _read(path: Path) -> NotebookNode:
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="module")
def release() -> NotebookNode:
    return _read(RELEASE)


def _cell(nb: NotebookNode, grade_id: str) -> NotebookNode:
    return next(
        c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
    )


def test_last_years_td_is_named_with_its_missing_cells(release: NotebookNode) -> None:
    """Is last year's TD recognised as another version of this TD, with every graded cell it lacks named?"""
    found = identify(_read(NOT_TD / "td_cnn_last_year.ipynb"), release, "td_cnn.ipynb")
    assert found.verdict == "foreign"
    assert "l'an dernier" in found.message and "`td_cnn.ipynb`" in found.message
    for grade_id in GRADED_CELLS:
        assert grade_id in found.missing and f"`{grade_id}`" in found.message


def test_another_assignment_is_named(release: NotebookNode) -> None:
    """Is another assignment's nbgrader notebook told apart from this TD, with what to submit instead?"""
    found = identify(_read(NOT_TD / "tp_regression.ipynb"), release, "td_cnn.ipynb")
    assert found.verdict == "foreign"
    assert "autre TD" in found.message and "Rendez le notebook distribué" in found.message
    assert "l'an dernier" not in found.message


@pytest.mark.parametrize("executed", [False, True], ids=["saved", "run-with-outputs"])
def test_untouched_release_says_nothing_was_changed(release: NotebookNode, executed: bool) -> None:
    """Is the release submitted as distributed (run or not) called « rien n'a été modifié »?"""
    nb = copy.deepcopy(release)
    if executed:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [nbformat.v4.new_output("stream", text="sortie\n")]
                cell.execution_count = 1
        nb.cells[-1].source += "\n"  # a trailing newline is not a change
    found = identify(nb, release, "td_cnn.ipynb")
    assert found.verdict == "untouched"
    assert found.message.startswith("Rien n'a été modifié")


def _answered(release: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(release)
    _cell(nb, "answer_examples").source = "Trois images sur huit sont bien classées."
    return nb


def _extra_cell(release: NotebookNode) -> NotebookNode:
    """Graded cells untouched, the student's predict in a cell of their own below."""
    nb = copy.deepcopy(release)
    index = nb.cells.index(_cell(nb, "predict"))
    nb.cells.insert(
        index + 1, nbformat.v4.new_code_cell("def predict(model, dataset):\n    return None")
    )
    return nb


def _one_cell_deleted(release: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(release)
    nb.cells.remove(_cell(nb, "minibatch"))
    _cell(nb, "answer_examples").source = "Réponse."
    return nb


@pytest.mark.parametrize(
    "make",
    [_answered, _extra_cell, _one_cell_deleted],
    ids=["one-answer-written", "own-cell-added", "one-graded-cell-deleted"],
)
def test_any_change_is_graded(
    release: NotebookNode, make: Callable[[NotebookNode], NotebookNode]
) -> None:
    """Is a release with any work in it (an answer, a cell of one's own) graded, never refused?"""
    found = identify(make(release), release, "td_cnn.ipynb")
    assert found.verdict == "assignment", found.message


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES.glob("*.ipynb") if p.stem != "chloe_unanswered"),
    ids=lambda p: p.stem,
)
def test_example_submissions_are_the_assignment(release: NotebookNode, path: Path) -> None:
    """Is every worked example submission (and the instructor's solution) recognised as the TD?"""
    assert identify(_read(path), release, "td_cnn.ipynb").verdict == "assignment"
    assert (
        identify(
            _read(ROOT / "source" / "td_cnn" / "td_cnn.ipynb"), release, "td_cnn.ipynb"
        ).verdict
        == "assignment"
    )


def test_require_assignment_raises_the_french_message() -> None:
    """Does the grader's entry point refuse a foreign notebook (only) with the message the student reads?"""
    with pytest.raises(NotTheAssignment, match="n'est pas celui distribué"):
        require_assignment(_read(NOT_TD / "td_cnn_last_year.ipynb"), RELEASE)
    assert (
        require_assignment(_read(EXAMPLES / "alice_solution.ipynb"), RELEASE).verdict
        == "assignment"
    )
    assert (
        require_assignment(_read(RELEASE), RELEASE).verdict == "untouched"
    )  # graded, with its message
