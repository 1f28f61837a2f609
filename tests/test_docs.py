"""Do the README and the guides under docs/ hold together: every link resolves, and every command
they tell a reader to type exists?"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from tdkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", flags=re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
# A command typed at the start of a code span or of a line of a code block.
TDKIT = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?tdkit ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
MAKE = re.compile(r"^make ([a-z][a-z-]*)")


def _typed(text: str) -> list[str]:
    """What a page tells a reader to type: its code spans and the lines of its code blocks."""
    blocks = FENCE.findall(text)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return lines + SPAN.findall(FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def _commands() -> set[str]:
    """Every command line tdkit knows: 'grade', 'export moodle'..."""
    names = set()
    for name, command in main.commands.items():
        names.add(name)
        if isinstance(command, click.Group):
            names.update(f"{name} {sub}" for sub in command.commands)
    return names


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        t
        for line in re.findall(r"^([a-z][a-z -]*):", makefile, flags=re.MULTILINE)
        for t in line.split()
    }


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_resolves(page: Path) -> None:
    """Does each relative link name a file of the repository, and each #anchor a heading of it?"""
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_command_named_exists(page: Path) -> None:
    """Is every `tdkit VERB` a command of the CLI and every `make TARGET` a target of the Makefile?"""
    commands, targets = _commands(), _make_targets()
    for typed in _typed(page.read_text(encoding="utf-8")):
        if found := TDKIT.match(typed):
            verb, sub = found.groups()
            assert verb in commands or f"{verb} {sub}" in commands, f"{page.name}: {typed!r}"
            assert (
                not isinstance(main.commands[verb], click.Group) or f"{verb} {sub}" in commands
            ), f"{page.name}: {typed!r}"
        if found := MAKE.match(typed):
            assert found.group(1) in targets, f"{page.name}: no target in the Makefile: {typed!r}"


def test_the_readme_fits_on_one_screen() -> None:
    """Does the README stay an opening (what tdkit is, the two commands, where to go), with the
    figures of runs in docs/benchmarks.md?"""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("\n") <= 60
    assert readme.split("```")[1].split() == ["make", "demo", "make", "test"]
    assert not re.search(r"\d+ s of CPU|\d+ passed", readme)
