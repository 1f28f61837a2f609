"""The nbgrader preprocessor that releases a chosen stub in place of a solution region."""

from __future__ import annotations

import nbformat
import pytest

from tdkit.release.stub import ClearSolutionsWithStubs, ReleaseStubError

SOLUTION_META = {
    "nbgrader": {
        "grade": False,
        "grade_id": "f",
        "locked": False,
        "schema_version": 3,
        "solution": True,
        "task": False,
    }
}


def _run(source: str) -> str:
    cell = nbformat.v4.new_code_cell(source, metadata=SOLUTION_META)
    nb = nbformat.v4.new_notebook(
        cells=[cell],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nb, _ = ClearSolutionsWithStubs().preprocess(nb, {})
    return nb.cells[0].source


def test_stub_replaces_solution() -> None:
    """Is the uncommented stub released where the solution was, at the solution's indentation?"""
    released = _run(
        "def f(x):\n"
        "    ### BEGIN RELEASE STUB\n"
        "    # for i in range(x):\n"
        "    #     pass\n"
        "    #\n"
        "    # return x\n"
        "    ### END RELEASE STUB\n"
        "    ### BEGIN SOLUTION\n"
        "    return 2 * x\n"
        "    ### END SOLUTION\n"
    )
    assert released == "def f(x):\n    for i in range(x):\n        pass\n\n    return x\n"


def test_without_stub_nbgrader_stub_is_used() -> None:
    """Does a solution cell without a release stub get nbgrader's usual 'YOUR CODE HERE'?"""
    released = _run("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n")
    assert "YOUR CODE HERE" in released and "2 * x" not in released


@pytest.mark.parametrize(
    "source",
    [
        "### BEGIN RELEASE STUB\n# x = 1\n",
        "### BEGIN RELEASE STUB\n# x = 1\n### END RELEASE STUB\nx = 2\n",
    ],
)
def test_malformed_stub_is_refused(source: str) -> None:
    """Is an unterminated stub, or a stub without a solution region, an error?"""
    with pytest.raises(ReleaseStubError):
        _run(source)
