"""The notebook's ``parameters`` cell (papermill convention) and its overrides."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any, cast

import nbformat
from nbformat.notebooknode import NotebookNode

from tdkit.core.errors import TdkitError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def parameters_cell_index(nb: NotebookNode) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def declared_parameters(nb: NotebookNode) -> dict[str, Any]:
    """Names and literal values assigned in the ``parameters`` cell."""
    index = parameters_cell_index(nb)
    if index is None:
        return {}
    try:
        tree = ast.parse(nb.cells[index].source)
    except SyntaxError:
        return {}
    declared: dict[str, Any] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                declared[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                declared[node.targets[0].id] = None
    return declared


def inject_parameters(
    nb: NotebookNode, values: Mapping[str, Any], *, strict: bool = True
) -> NotebookNode:
    """A copy of ``nb`` with a cell assigning ``values`` right after the ``parameters`` cell.

    ``strict``: every name must be declared in the parameters cell (the source notebook's
    contract). Without a parameters cell (a student removed it), the cell goes first.
    """
    if strict:
        unknown = sorted(set(values) - set(declared_parameters(nb)))
        if unknown:
            raise TdkitError(
                f"Parameters {unknown} are not assigned in the notebook's 'parameters' cell: add them "
                "there or remove them from the grading profile."
            )
    copy = cast(NotebookNode, nbformat.reads(nbformat.writes(nb), as_version=4))
    index = parameters_cell_index(copy)
    source = "# Paramètres imposés par le correcteur\n" + "\n".join(
        f"{k} = {v!r}" for k, v in values.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cell.id = INJECTED_TAG
    copy.cells.insert(0 if index is None else index + 1, cell)
    return copy
