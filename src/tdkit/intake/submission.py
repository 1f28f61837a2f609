"""Trusted preparation of a submission before its untrusted run.

nbgrader's own sanitising restores every locked cell and test cell (hidden tests included)
from the gradebook, then the grading profile overrides the ``parameters`` cell and the
probe cell is appended.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from typing import cast

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    OverwriteCells,
    OverwriteKernelspec,
)

from tdkit.core.assignment import GradingProfile
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.release.parameters import inject_parameters
from tdkit.untrusted.probe_cell import probe_cell


class UnreadableSubmission(TdkitError):
    """The submitted file cannot be graded; the message (French) is for the student."""


def read_submission(
    course: Course, student_id: str, max_bytes: int, max_cells: int
) -> NotebookNode:
    """The submitted notebook, refused with a clear reason when it is not a gradable notebook.

    Never follows a symlink (file or folder): a submission could point at an instructor file.
    """
    path = course.submitted_notebook(student_id)
    base = os.path.realpath(course.submitted)
    expected = os.path.join(base, student_id, course.assignment, path.name)
    if os.path.realpath(path) != expected or path.is_symlink():
        raise UnreadableSubmission(
            "Fichier refusé : le notebook rendu est un lien symbolique (ou dans un dossier qui en est un), "
            "pas un fichier ; il n'a pas été lu. Rendez le fichier .ipynb lui-même."
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise UnreadableSubmission(f"Fichier illisible : {error.strerror}.") from error
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableSubmission(
                "Fichier refusé : le notebook rendu n'est pas un fichier ordinaire."
            )
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnreadableSubmission(
            f"Fichier refusé : le notebook dépasse {max_bytes // (1024 * 1024)} Mo."
        )
    if not data.strip():
        raise UnreadableSubmission(
            "Fichier vide : le notebook rendu ne contient rien. Rendez votre .ipynb enregistré."
        )
    if data.startswith(b"PK\x03\x04") or zipfile.is_zipfile(path):
        raise UnreadableSubmission(
            "Ce fichier est une archive zip renommée en .ipynb, pas un notebook : rendez le fichier .ipynb "
            "lui-même (Fichier > Télécharger > Notebook)."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableSubmission(
            f"Fichier illisible : il n'est pas encodé en UTF-8 (octet {data[error.start]:#04x} à la position "
            f"{error.start}). Un notebook Jupyter est toujours en UTF-8 : rendez le fichier tel que Jupyter "
            "l'enregistre."
        ) from error
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise UnreadableSubmission(
            f"Fichier illisible : ce n'est pas du JSON valide ({error}). Le notebook a sans doute été modifié "
            "hors de Jupyter ou tronqué : rouvrez-le dans Jupyter et enregistrez-le."
        ) from error
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise UnreadableSubmission(
            "Fichier illisible : ce JSON n'est pas un notebook Jupyter (pas de cellules)."
        )
    try:
        nb = cast(NotebookNode, nbformat.reads(text, as_version=4))
    except Exception as error:
        raise UnreadableSubmission(
            f"Notebook illisible ({type(error).__name__}) : {str(error)[:300]}"
        ) from error
    if len(nb.cells) > max_cells:
        raise UnreadableSubmission(
            f"Notebook refusé : {len(nb.cells)} cellules, plus que les {max_cells} acceptées. Rendez le "
            "notebook du TD, sans cellules ajoutées en masse."
        )
    return nb


def known_cell_ids(course: Course) -> set[str]:
    """grade_ids of the assignment's nbgrader cells, from the gradebook (trusted)."""
    from nbgrader.api import Gradebook

    from tdkit.core.course import in_process_alembic_head

    in_process_alembic_head()
    with Gradebook(course.db_url, course.course_id) as gb:
        return {
            cell.name
            for cell in gb.find_notebook(course.assignment, course.assignment).source_cells
        }


def forget_foreign_cells(nb: NotebookNode, known: set[str]) -> NotebookNode:
    """Plain cells of every nbgrader cell the instructor never wrote: unknown, renamed, missing or
    duplicated grade_ids (nbgrader's own steps crash on some). Renamed or deleted originals are then
    restored by ``OverwriteCells``; points and grades only ever come from the gradebook."""
    seen: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if "nbgrader" not in meta:
            continue
        grade_id = meta["nbgrader"].get("grade_id") if isinstance(meta["nbgrader"], dict) else None
        if not isinstance(grade_id, str) or grade_id not in known or grade_id in seen:
            del meta["nbgrader"]
        else:
            seen.add(grade_id)
    return nb


def sanitise(course: Course, nb: NotebookNode, student_id: str) -> NotebookNode:
    """nbgrader autograde's sanitising steps, configured from the course."""
    nb = forget_foreign_cells(nb, known_cell_ids(course))
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
    for step in (
        ClearOutput,
        DeduplicateIds,
        OverwriteKernelspec,
        OverwriteCells,
        CheckCellMetadata,
    ):
        nb, resources = step(config=config).preprocess(nb, resources)
    return _with_cell_ids(nb)


def _with_cell_ids(nb: NotebookNode) -> NotebookNode:
    """An id for each cell that lacks one in an nbformat >= 4.5 notebook: the test cells nbgrader
    restores (``add_missing_cells``) have none, which nbformat warns about today and will refuse.
    The same ids on every grading of the same notebook."""
    if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) < (4, 5):
        return nb
    used = {cell.get("id") for cell in nb.cells}
    for index, cell in enumerate(nb.cells):
        if "id" in cell:
            continue
        candidate, n = f"tdkit-{index}", 0
        while candidate in used:
            n += 1
            candidate = f"tdkit-{index}-{n}"
        cell["id"] = candidate
        used.add(candidate)
    return nb


def prepare_submission(
    course: Course, nb: NotebookNode, student_id: str, profile: GradingProfile
) -> NotebookNode:
    prepared = inject_parameters(sanitise(course, nb, student_id), profile.parameters, strict=False)
    prepared.cells.append(probe_cell())
    return cast(NotebookNode, nbformat.from_dict(prepared))
