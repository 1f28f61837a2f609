"""Is the submitted notebook the distributed one, and was anything written in it?

Runs on the trusted side before sanitising, against the release notebook. Three verdicts:

- ``"assignment"``: at least one graded cell of the release is there; graded as usual (a
  missing function costs only its own checks).
- ``"foreign"``: none of the release's graded cells is there: last year's TD (same title, no
  nbgrader cells), another assignment's notebook, a notebook rebuilt by hand. nbgrader cannot
  restore what it never had, so nothing is run; one message names the missing cells and what
  to submit instead.
- ``"untouched"``: every cell is the release's, unchanged (outputs aside): graded as usual
  (its score is the release's), with one message, « rien n'a été modifié », in place of the
  twenty the unwritten functions would get. A cell added or edited anywhere is work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nbformat
from nbformat.notebooknode import NotebookNode

from tdkit.intake.submission import UnreadableSubmission

Verdict = Literal["assignment", "foreign", "untouched"]


class NotTheAssignment(UnreadableSubmission):
    """The submission is not the distributed notebook; the message, in French, says what to submit."""


@dataclass(frozen=True)
class Identification:
    verdict: Verdict
    missing: tuple[
        str, ...
    ] = ()  # grade_ids of the release's graded cells absent from the submission
    message: str = ""  # French, for the student; empty for "assignment"


def _grade_id(cell: NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def _written_cells(nb: NotebookNode) -> dict[str, str]:
    """grade_id -> source of every cell the student writes in (nbgrader ``solution`` cells)."""
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        grade_id = _grade_id(cell)
        if grade_id and isinstance(meta, dict) and meta.get("solution") and grade_id not in cells:
            cells[grade_id] = str(cell.get("source", ""))
    return cells


def _title(nb: NotebookNode) -> str | None:
    """The first heading of the notebook (Markdown ``#`` or underlined with ``===``)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line.strip() for line in str(cell.source).splitlines()]
        for line, below in zip(lines, [*lines[1:], ""]):
            if line.startswith("#"):
                return line.lstrip("#").strip() or None
            if line and re.fullmatch(r"=+", below):
                return line
    return None


def _normalised(text: str) -> str:
    """Equal but for trailing spaces and blank lines at the ends."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _unchanged(submitted: NotebookNode, release: NotebookNode) -> bool:
    """Every graded cell is the release's, and no cell was added or edited anywhere."""
    expected = _written_cells(release)
    written = _written_cells(submitted)
    if any(
        _normalised(written.get(g, "")) != _normalised(source) for g, source in expected.items()
    ):
        return False
    known = {_normalised(str(cell.get("source", ""))) for cell in release.cells}
    return all(_normalised(str(cell.get("source", ""))) in known | {""} for cell in submitted.cells)


def _listing(grade_ids: list[str]) -> str:
    return ", ".join(f"`{g}`" for g in grade_ids)


def identify(submitted: NotebookNode, release: NotebookNode, filename: str) -> Identification:
    """Whether ``submitted`` is the release ``filename`` worked on, another notebook, or the release as is."""
    expected = _written_cells(release)
    found = {_grade_id(cell) for cell in submitted.cells} - {None}
    missing = tuple(g for g in expected if g not in found)
    if expected and len(missing) == len(expected):
        title = _title(release)
        same_td = title is not None and title == _title(submitted)
        what = (
            f"une autre version de « {title} » (celle de l'an dernier ?), sans les cellules notées du "
            "notebook distribué"
            if same_td
            else f"un autre notebook que{f' « {title} »' if title else ' celui du TD'} (celui d'un autre TD ?)"
        )
        return Identification(
            "foreign",
            missing,
            f"Ce notebook n'est pas celui distribué pour ce TD : c'est {what}. Aucune des cellules notées "
            f"n'y figure (il manque {_listing(list(missing))}) : rien n'a pu être exécuté ni évalué. Rendez "
            f"le notebook distribué, `{filename}`, complété : écrivez votre code dans ses cellules, sans "
            "changer le nom ni la signature des fonctions.",
        )
    if expected and _unchanged(submitted, release):
        return Identification(
            "untouched",
            (),
            f"Rien n'a été modifié : ce notebook est `{filename}` tel qu'il a été distribué (aucune fonction "
            "écrite, aucune réponse). Il a été corrigé tel quel : seules comptent les vérifications que le "
            "code distribué passe déjà. Complétez-le, puis rendez-le à nouveau ; vérifiez avant de rendre "
            "que vous envoyez bien le fichier enregistré.",
        )
    return Identification("assignment", missing)


def require_assignment(submitted: NotebookNode, release_path: Path) -> Identification:
    """``identify`` against the release at ``release_path``; raises ``NotTheAssignment`` for a foreign notebook."""
    found = identify(submitted, nbformat.read(release_path, as_version=4), release_path.name)
    if found.verdict == "foreign":
        raise NotTheAssignment(found.message)
    return found
