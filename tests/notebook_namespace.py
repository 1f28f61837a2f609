"""A fast, function-level harness: a submission's functions without running the notebook.

``namespace_from_notebook(path)`` execs, in a fresh dict, the code a grader's probe needs from
a submission: the import cell (the first code cell), the ``parameters`` cell, the locked
``convnet`` cell and every solution cell (nbgrader ``solution: true`` code cells), in notebook
order. The parameters cell gets the grader's overrides (td_cnn's ``assignment.Parameters``). The data
and training cells are not run; stand-ins built from the same profile take the place of the
globals they would leave behind (``train_dataset``, ``test_dataset``, ``model``, ``optim``,
``loss_history``), so that a function that wrongly reads a global behaves as it does in the
graded kernel instead of raising ``NameError``.

Why not run the notebook: the full-kernel path (nbclient kernel, grading profile, sandbox)
is tested elsewhere and costs about 20 s per notebook; this harness costs a few milliseconds,
so the trap tests can cover dozens of variants. What it cannot see (a data cell that breaks,
a student's top-level code outside the solution cells) is the kernel path's business.

Like a kernel run with ``allow_errors``, a cell that raises stops there and the next cells
still run; the errors are listed in ``namespace[CELL_ERRORS]``.
"""

from __future__ import annotations

import traceback
from functools import cache
from pathlib import Path
from typing import Any

import nbformat

CELL_ERRORS = "__cell_errors__"  # name -> list of "<cell>: <exception>" lines


def _grade_id(cell: Any) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _is_solution(cell: Any) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def _python_only(source: str) -> str:
    """Drop IPython line magics and shell escapes (``%matplotlib``, ``!pip``): plain exec has no shell."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")
    )


@cache
def _grading_profile() -> dict[str, Any]:
    """The parameters the grader injects (td_cnn's ``Parameters``), data always synthetic."""
    from dataclasses import asdict

    from grader_tests.td_cnn.assignment import Parameters

    return asdict(Parameters(DATA_SOURCE="synthetic"))


@cache
def _stand_in_arrays() -> tuple[Any, Any, Any, Any]:
    from grader_tests.td_cnn.cifar import load_cifar10, prepare

    profile = _grading_profile()
    split = load_cifar10(
        "synthetic",
        n_train=profile["TRAIN_SUBSET"],
        n_test=profile["TEST_SUBSET"],
        seed=profile["SEED"],
    )
    prepared = prepare(split)
    return prepared.x_train, prepared.y_train, prepared.x_test, prepared.y_test


def _stand_ins(namespace: dict[str, Any]) -> dict[str, Any]:
    """What the notebook's data and training cells leave behind under the grading profile.

    Same sizes and data as the graded kernel's (synthetic, profile's subsets and seed); the
    model is untrained and ``loss_history`` has one made-up loss per epoch of the profile.
    """
    import torch

    from grader_tests.td_cnn.cifar import CLASS_NAMES, to_zdata_dataset

    x_train, y_train, x_test, y_test = _stand_in_arrays()
    found: dict[str, Any] = {
        "classes_names": CLASS_NAMES,
        "train_dataset": to_zdata_dataset(x_train, y_train),
        "test_dataset": to_zdata_dataset(x_test, y_test),
        "loss_history": [2.2581 - 0.1 * epoch for epoch in range(_grading_profile()["N_EPOCHS"])],
    }
    convnet = namespace.get("ConvNet")
    if isinstance(convnet, type):
        torch.manual_seed(_grading_profile()["SEED"])
        found["model"] = convnet()
        found["optim"] = torch.optim.SGD(found["model"].parameters(), lr=0.003)
    return found


def _run(namespace: dict[str, Any], source: str, name: str) -> None:
    try:
        exec(compile(_python_only(source), f"<cell {name}>", "exec"), namespace)  # noqa: S102 - test harness
    except Exception as error:  # noqa: BLE001 - the kernel would go on to the next cell
        line = traceback.format_exception_only(type(error), error)[-1].strip()
        namespace[CELL_ERRORS].append(f"{name}: {line}")


def namespace_from_notebook(path: str | Path) -> dict[str, Any]:
    """The globals a submission's functions see, from its import, parameters, convnet and solution cells."""
    import matplotlib

    matplotlib.use("Agg")
    # No schema validation: jsonschema's format checkers cost ~0.2 s per notebook, and a broken
    # notebook is the kernel path's business.
    nb = nbformat.v4.reads(Path(path).read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "__main__", CELL_ERRORS: []}
    code_cells = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    stand_ins_done = False
    for position, (index, cell) in enumerate(code_cells):
        grade_id = _grade_id(cell)
        is_parameters = "parameters" in cell.get("metadata", {}).get("tags", [])
        if not (position == 0 or is_parameters or grade_id == "convnet" or _is_solution(cell)):
            continue
        _run(namespace, cell.source, grade_id or f"cell {index}")
        if is_parameters:
            namespace.update(_grading_profile())
        if grade_id == "convnet" and not stand_ins_done:
            namespace.update(_stand_ins(namespace))
            stand_ins_done = True
    if not stand_ins_done:
        namespace.update(_stand_ins(namespace))
    return namespace
