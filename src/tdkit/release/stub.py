"""nbgrader preprocessor: release a solution region as a chosen stub instead of "YOUR CODE HERE".

The TD's ``train`` cell is released with the TD's own buggy loop for the student to fix. In
the source the stub sits, commented out, in a ``### BEGIN RELEASE STUB`` region of the
cell, so the solution notebook still runs::

    ### BEGIN RELEASE STUB
    # for epoch in range(n_epochs):
    #     ...
    ### END RELEASE STUB
    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

Registered in ``nbgrader_config.py`` in place of ``ClearSolutions``.
"""

from __future__ import annotations

import re
from typing import cast

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearSolutions
from traitlets import Unicode

COMMENT = re.compile(r"^# ?")


class ReleaseStubError(ValueError):
    """A release stub region is malformed; the message names the cell."""


class ClearSolutionsWithStubs(ClearSolutions):  # type: ignore[misc]  # nbgrader ships no types: its base class is Any
    begin_stub_delimiter = Unicode(
        "BEGIN RELEASE STUB",
        help="Marks the start of a commented-out stub released in place of the solution",
    ).tag(config=True)
    end_stub_delimiter = Unicode(
        "END RELEASE STUB", help="Marks the end of a release stub region"
    ).tag(config=True)
    code_stub: dict[
        str, str
    ]  # ClearSolutions' Dict trait: language -> the stub released in place of a solution

    def _pop_stub(self, cell: NotebookNode) -> str | None:
        """Remove the stub region from the cell; return its uncommented text, or None."""
        kept: list[str] = []
        stub: list[str] | None = None
        indent = ""
        inside = False
        for line in cell.source.split("\n"):
            if self.begin_stub_delimiter in line:
                if stub is not None:
                    raise ReleaseStubError(f"two release stubs in one cell:\n{cell.source}")
                inside, stub = True, []
                indent = line[: len(line) - len(line.lstrip())]
            elif self.end_stub_delimiter in line:
                inside = False
            elif inside:
                assert stub is not None
                body = line[len(indent) :] if line.startswith(indent) else line.lstrip()
                stub.append(COMMENT.sub("", body, count=1))
            else:
                kept.append(line)
        if inside:
            raise ReleaseStubError(
                f"release stub without '{self.end_stub_delimiter}':\n{cell.source}"
            )
        cell.source = "\n".join(kept)
        return None if stub is None else "\n".join(stub)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        stub = self._pop_stub(cell) if cell.cell_type == "code" else None
        if stub is None:
            return cast(
                "tuple[NotebookNode, ResourcesDict]",
                super().preprocess_cell(cell, resources, cell_index),
            )
        if self.begin_solution_delimeter not in cell.source:
            raise ReleaseStubError(
                f"a release stub needs a solution region in the same cell:\n{cell.source}"
            )
        default = self.code_stub
        self.code_stub = {**default, resources["language"]: stub}
        try:
            cell, resources = super().preprocess_cell(cell, resources, cell_index)
        finally:
            self.code_stub = default
        # Stub blank lines come back indented: strip that trailing white space.
        cell.source = "\n".join(line.rstrip() for line in cell.source.split("\n"))
        return cell, resources
