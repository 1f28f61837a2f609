"""Trusted preparation of a submission before its untrusted run.

nbgrader's own sanitising restores every locked cell and test cell (hidden tests included)
from the gradebook, then the grading profile overrides the ``parameters`` cell and the
probe cell is appended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    OverwriteCells,
    OverwriteKernelspec,
)

from tdkit.course import Course
from tdkit.parameters import inject_parameters
from tdkit.runner import probe_cell


@dataclass(frozen=True)
class GradingProfile:
    """Overrides of the notebook's ``parameters`` cell for the untrusted run.

    Small data, few epochs, fixed seed: the run shows that the notebook works; the probe and
    the hidden checks judge the functions on their own inputs, whatever the data source.
    """

    DATA_SOURCE: str = "synthetic"  # or a local CIFAR-10 directory, bound read-only in the sandbox
    TRAIN_SUBSET: int = 200
    TEST_SUBSET: int = 200
    N_EPOCHS: int = 1
    MINIBATCH_EPOCHS: int = 1
    SEED: int = 0

    def parameters(self) -> dict[str, Any]:
        return asdict(self)

    def data_dirs(self) -> list[Path]:
        """Local data the run must read."""
        path = Path(self.DATA_SOURCE)
        return [path.resolve()] if path.is_dir() else []


GRADING_PARAMETERS = GradingProfile().parameters()


def sanitise(course: Course, nb: NotebookNode, student_id: str) -> NotebookNode:
    """nbgrader autograde's sanitising steps, configured from the course."""
    config = course.nbgrader_config()
    config.OverwriteCells.add_missing_cells = True
    resources = {
        "nbgrader": {
            "notebook": course.assignment,
            "assignment": course.assignment,
            "student": student_id,
            "db_url": course.db_url,
        }
    }
    for step in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata):
        nb, resources = step(config=config).preprocess(nb, resources)
    return nb


def prepare_submission(
    course: Course, nb: NotebookNode, student_id: str, profile: GradingProfile = GradingProfile()
) -> NotebookNode:
    prepared = inject_parameters(sanitise(course, nb, student_id), profile.parameters(), strict=False)
    prepared.cells.append(probe_cell())
    return nbformat.from_dict(prepared)
