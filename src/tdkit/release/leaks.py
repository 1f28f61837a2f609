"""Does a release notebook leak any solution or hidden-test line of its source?

A line is secret when it stands inside a ``BEGIN SOLUTION`` or ``BEGIN HIDDEN TESTS`` region
of the source and nowhere outside one (``for epoch in range(n_epochs):`` is in both the
solution and the released stub, so it is public).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nbformat.notebooknode import NotebookNode

REGIONS = {
    "BEGIN SOLUTION": ("END SOLUTION", "solution"),
    "BEGIN HIDDEN TESTS": ("END HIDDEN TESTS", "hidden test"),
    "BEGIN MARK SCHEME": ("END MARK SCHEME", "mark scheme"),
}
STUB_BEGIN, STUB_END = "BEGIN RELEASE STUB", "END RELEASE STUB"
MEANINGFUL = re.compile(r"[A-Za-z0-9]")
COMMENT = re.compile(r"^# ?")


@dataclass(frozen=True)
class Leak:
    kind: str  # "solution", "hidden test" or "mark scheme"
    line: str
    cell_index: int  # in the release notebook


def _split_lines(nb: NotebookNode) -> tuple[dict[str, str], set[str], list[str]]:
    """(secret line -> kind, public lines, released stub lines) of the source notebook."""
    secret: dict[str, str] = {}
    public: set[str] = set()
    stub: list[str] = []
    for cell in nb.cells:
        region: tuple[str, str] | None = None
        in_stub = False
        for raw in cell.source.split("\n"):
            line = raw.strip()
            opening = next((k for k in REGIONS if k in line), None)
            if opening:
                region = REGIONS[opening]
            elif region and region[0] in line:
                region = None
            elif STUB_BEGIN in line:
                in_stub = True
            elif STUB_END in line:
                in_stub = False
            elif in_stub:
                released = COMMENT.sub("", line, count=1).strip()
                stub.append(released)
                public.add(released)
            elif region:
                secret.setdefault(line, region[1])
            else:
                public.add(line)
    secret = {
        line: kind
        for line, kind in secret.items()
        if line not in public and MEANINGFUL.search(line)
    }
    return secret, public, [s for s in stub if s]


def find_leaks(source: NotebookNode, release: NotebookNode) -> list[Leak]:
    secret, _, _ = _split_lines(source)
    leaks = []
    for index, cell in enumerate(release.cells):
        for raw in cell.source.split("\n"):
            kind = secret.get(raw.strip())
            if kind:
                leaks.append(Leak(kind, raw.strip(), index))
    return leaks


def missing_stub_lines(source: NotebookNode, release: NotebookNode) -> list[str]:
    """Lines of the release stubs that the release does not show (it should show them all)."""
    _, _, stub = _split_lines(source)
    released = {raw.strip() for cell in release.cells for raw in cell.source.split("\n")}
    return [line for line in stub if line not in released]
