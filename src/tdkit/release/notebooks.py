"""The jupytext Markdown source and its derived ``.ipynb`` pair."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import jupytext
import nbformat
from nbformat.notebooknode import NotebookNode

from tdkit.core.errors import TdkitError


def stable_ids(nb: NotebookNode) -> NotebookNode:
    """Give every cell an id derived from its grade_id or position: random ids would make
    every regeneration differ."""
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        cell_id = grade_id if grade_id and grade_id not in seen else f"cell-{index:03d}"
        cell.id = cell_id
        seen.add(cell_id)
    return nb


def read_source(md_path: Path) -> NotebookNode:
    """The master notebook from its Markdown, ids stable, no outputs."""
    if not md_path.is_file():
        raise TdkitError(
            f"Source notebook {md_path} is missing: create it or run from the course directory."
        )
    nb = jupytext.read(md_path, fmt="md")
    nb.metadata.pop("jupytext", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return stable_ids(nb)


def pair_text(md_path: Path) -> str:
    """The ``.ipynb`` pair of ``md_path`` as it must be on disk."""
    nb = read_source(md_path)
    nb.metadata["jupytext"] = {"formats": "ipynb,md"}
    return cast(str, nbformat.writes(nb)) + "\n"


def sync_pair(md_path: Path) -> Path:
    """Write the ``.ipynb`` pair from the Markdown (the Markdown is the source of truth)."""
    ipynb = md_path.with_suffix(".ipynb")
    text = pair_text(md_path)
    if not ipynb.is_file() or ipynb.read_text(encoding="utf-8") != text:
        ipynb.write_text(text, encoding="utf-8")
    return ipynb
