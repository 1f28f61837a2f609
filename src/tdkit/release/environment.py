"""The course environment: the packages a student's notebook may import, declared once.

``td-requirements.txt`` at the course root is a pip requirements file, one package a line.
Students install it (``pip install -r td-requirements.txt``); the grader installs it in its own
``.venv`` (``make``). What a notebook may import is what that install gives: the standard
library, the top-level modules of the declared distributions and of their dependencies (as
installed here), and ``tdkit`` itself (the grader's hidden-test cells and probe import it).
``tdkit.untrusted.import_guard`` enforces it in the kernel; ``tdkit release``, ``tdkit grade`` and
``tdkit check`` read it from here.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections import deque
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tdkit.core.errors import TdkitError
from tdkit.untrusted.import_guard import KERNEL_PACKAGE, top_level

if TYPE_CHECKING:
    from nbformat.notebooknode import NotebookNode

ENVIRONMENT_FILE = "td-requirements.txt"
# The notebook's listing of the environment, rewritten by `tdkit release` between these lines.
LISTING_BEGIN = "<!-- BEGIN ENVIRONMENT: written by tdkit release from td-requirements.txt -->"
LISTING_END = "<!-- END ENVIRONMENT -->"


@dataclass(frozen=True)
class CourseEnvironment:
    path: Path
    requirements: tuple[str, ...]  # the declared lines, normalised ("torch>=2.2")
    packages: tuple[str, ...]  # their distribution names, in file order (those for this platform)
    distributions: frozenset[
        str
    ]  # canonical names of the declared distributions and their dependencies
    not_installed: tuple[
        str, ...
    ]  # declared lines this interpreter lacks, or has at another version

    @cached_property
    def modules(self) -> frozenset[str]:
        """Top-level modules of ``distributions``: scanning every installed file list takes about a
        second, so only a run that grades or releases pays it, not one that keeps every result."""
        return frozenset(
            module
            for module, dists in metadata.packages_distributions().items()
            if module.isidentifier()
            and any(canonicalize_name(d) in self.distributions for d in dists)
        )

    def allows(self, module: str) -> bool:
        top = top_level(module)
        return top in self.modules or top in sys.stdlib_module_names or top == KERNEL_PACKAGE

    def kernel_json(self) -> str:
        """What the kernel's import guard needs (``tdkit.untrusted.import_guard.install``)."""
        return json.dumps({"packages": list(self.packages), "modules": sorted(self.modules)})

    def require_installed(self, fix: str) -> None:
        """Raise, naming ``fix``, when a declared package is missing or at another version here."""
        if self.not_installed:
            raise TdkitError(
                f"{self.path} declares {', '.join(self.not_installed)}, not installed in this Python "
                f"({sys.prefix}): {fix}."
            )


def _requirements(path: Path, text: str) -> list[Requirement]:
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise TdkitError(
                f"{path}:{number}: {line!r} is a pip option; the course environment lists packages only, "
                "one a line (e.g. 'seaborn>=0.13')."
            )
        try:
            found.append(Requirement(line))
        except InvalidRequirement as error:
            raise TdkitError(
                f"{path}:{number}: {line!r} is not a package requirement ({error})."
            ) from None
    return found


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""})


def read_environment(path: Path) -> CourseEnvironment:
    """The environment ``path`` declares, resolved against the distributions installed here."""
    if not path.is_file():
        raise TdkitError(
            f"{path} is missing: the course environment is declared there, one package a line "
            "(e.g. 'torch>=2.2'). Restore it from the course repository."
        )
    return _resolved(path, _requirements_text(path))


def _requirements_text(path: Path) -> str:
    """The file as pip reads it, UTF-8; another encoding is named with its first odd line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TdkitError(f"Cannot read {path} ({error.strerror}): fix its permissions.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TdkitError(
            f"{path}:{line}: not UTF-8 text (byte {data[error.start]:#04x}; the file was saved in "
            "another encoding, e.g. Latin-1): save it again as UTF-8 (pip reads it so too)."
        ) from None


@cache  # one process installs nothing
def _resolved(path: Path, text: str) -> CourseEnvironment:
    declared = _requirements(path, text)
    missing: list[str] = []
    extras_of: dict[str, set[str]] = {}
    # Declared lines first, in file order; a line whose marker excludes this platform is not for it.
    queue = deque((requirement, True) for requirement in declared if _applies(requirement, set()))
    while queue:
        requirement, is_declared = queue.popleft()
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            if is_declared:
                missing.append(str(requirement))
            continue  # a dependency pip would not install here (another platform, an optional one)
        if is_declared and not requirement.specifier.contains(dist.version, prereleases=True):
            missing.append(f"{requirement} (installed: {dist.version})")
        key = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if key in extras_of and extras <= extras_of[key]:
            continue
        extras_of[key] = extras_of.get(key, set()) | extras
        for line in dist.requires or []:
            dependency = Requirement(line)
            if _applies(dependency, extras_of[key]):
                queue.append((dependency, False))
    return CourseEnvironment(
        path,
        tuple(str(r) for r in declared),
        tuple(r.name for r in declared if _applies(r, set())),
        frozenset(extras_of),
        tuple(missing),
    )


def grading_environment(root: Path) -> CourseEnvironment:
    """The course's environment, every declared package installed where tdkit runs; else an error."""
    environment = read_environment(root / ENVIRONMENT_FILE)
    environment.require_installed(
        f"run 'make' in the course directory (it installs {ENVIRONMENT_FILE} into .venv), then this command again"
    )
    return environment


def find_environment_file(notebook: Path) -> Path:
    """``td-requirements.txt`` beside the notebook or above it, else in the working directory or above."""
    for start in (notebook.resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / ENVIRONMENT_FILE).is_file():
                return folder / ENVIRONMENT_FILE
    raise TdkitError(
        f"No {ENVIRONMENT_FILE} beside {notebook} or above: put the course's {ENVIRONMENT_FILE} (distributed "
        "with the notebook) next to it, or pass --requirements PATH."
    )


def listing_markdown(environment: CourseEnvironment) -> str:
    """The notebook's listing of the environment, sentinels included."""
    items = [f"- `{requirement}`" for requirement in environment.requirements]
    return "\n".join([LISTING_BEGIN, *items, LISTING_END])


def with_listing(markdown: str, environment: CourseEnvironment) -> str:
    """``markdown`` with its environment listing rewritten; an error when it has none."""
    pattern = re.compile(re.escape(LISTING_BEGIN) + r".*?" + re.escape(LISTING_END), re.DOTALL)
    if not pattern.search(markdown):
        raise TdkitError(
            f"The notebook does not list its environment: put the lines\n{LISTING_BEGIN}\n{LISTING_END}\n"
            "in its opening Markdown (tdkit release writes the packages between them)."
        )
    return pattern.sub(lambda _: listing_markdown(environment), markdown, count=1)


def _python_lines(source: str) -> str:
    """A cell without its IPython magics and shell escapes, which are not Python."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")
    )


def imports_outside(nb: NotebookNode, environment: CourseEnvironment) -> list[tuple[int, str]]:
    """(cell index, module) of every absolute import, at any depth, of a module outside ``environment``."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python_lines(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [(index, name) for name in names if not environment.allows(name)]
    return found
