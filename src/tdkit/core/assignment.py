"""What an assignment gives the engine, and how the engine finds it.

An assignment is course content. Its grading side is the package ``grader_tests/<name>/`` of the
course, whose ``assignment.py`` defines ``ASSIGNMENT``, an :class:`Assignment`: its check groups
(the student functions it judges, with their French labels), the files of its probe (the only
ones copied into the sandbox), its grading profile (the notebook's parameters and the data it
reads), what the zygote preloads for it, and the figures its feedback page draws. Everything
else in that package stays on the trusted side: ``checks_*.py`` (their ``artifact`` and
``artifacts_dir`` fixtures are the engine's, ``tdkit.trusted.check_fixtures``), ``oracle.py``
(whose ``reference_views()`` gives the reference's value of each figure) and an optional
``conftest.py`` for the assignment's own fixtures.

Imported on both sides of the sandbox: light on purpose, standard library only.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdkit.core.errors import TdkitError

PACKAGE = "grader_tests"  # the course's package of grading sides, one subpackage per assignment
DEFINITION = "assignment.py"  # in grader_tests/<name>/: defines ASSIGNMENT
PROBE_MODULE = "probe"  # grader_tests/<name>/probe.py: the probe, always copied into the sandbox


@dataclass(frozen=True)
class CheckGroup:
    name: str  # the group of check ids, ``<name>/<check>``, and of the probe's artifact ``<name>.json``
    function: str  # the student function (or class) the probe calls
    label: str  # French, the heading of the group in the feedback page


@dataclass(frozen=True)
class GradingProfile:
    """Overrides of the notebook's ``parameters`` cell for a run, and the local data it reads.

    Small data, few epochs, fixed seed: the run shows that the notebook works; the probe and the
    hidden checks judge the functions on their own inputs, whatever the data source.
    """

    parameters: Mapping[str, Any] = field(default_factory=dict)
    data_dirs: tuple[Path, ...] = ()  # bound read-only in the sandbox


@dataclass(frozen=True)
class CurveFigure:
    """The student's curve beside the reference's (one line each, x = 1, 2, ...)."""

    name: str  # the key of the oracle's view (``reference_views()``) and of results.json's figures
    heading: str  # French, above the figure
    group: str  # the student's curve: the field ``field`` of this group's artifact
    field: str
    caption: str  # under the figure when both curves are drawn
    xlabel: str
    ylabel: str


@dataclass(frozen=True)
class MatrixFigure:
    """The student's matrix beside the reference's, drawn as images of the same scale."""

    name: str
    heading: str
    group: str  # the student's matrix: the first of ``arrays`` found in this group's ``.npz``
    arrays: tuple[str, ...]
    shape: tuple[int, int]  # the shape the statement asks for
    reference_caption: str
    xlabel: str
    ylabel: str
    ticks: tuple[str, ...] = ()  # names of the rows and columns, when the matrix has that many


Figure = CurveFigure | MatrixFigure


@dataclass(frozen=True)
class Assignment:
    """``ASSIGNMENT`` in ``grader_tests/<name>/assignment.py``."""

    title: str  # French, the TD's title at the top of its pages
    groups: tuple[CheckGroup, ...]  # in the order the notebook asks for them
    # Its files the probe imports, besides probe.py and assignment.py: copied into each sandbox
    # job, never the checks, the oracle or the reference.
    sandbox: tuple[str, ...] = ()
    # data source (None: the default, else what ``tdkit demo`` or the instructor gave) -> profile
    profile: Callable[[str | None], GradingProfile] = lambda source: GradingProfile()
    # The profile ``tdkit release`` runs the solution on: small, to verify it in seconds.
    release_profile: Callable[[], GradingProfile] = GradingProfile
    preload: tuple[str, ...] = ()  # modules its kernels import, preloaded by the zygote
    figures: tuple[Figure, ...] = ()
    # ``tdkit demo``'s data source for this assignment (None: the default), told with ``say``.
    demo_source: Callable[[Path, Callable[[str], None]], str | None] = lambda root, say: None

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    def group(self, name: str) -> CheckGroup | None:
        return next((group for group in self.groups if group.name == name), None)


def package_name(assignment: str) -> str:
    return f"{PACKAGE}.{assignment}"


def use_course(root: Path) -> None:
    """Make ``root``'s ``grader_tests`` and ``reference`` the ones Python imports.

    Their modules have the same names in every course: another course's, left in
    ``sys.modules`` by an earlier grading in this process, are dropped.
    """
    root = root.resolve()
    for name, module in list(sys.modules.items()):
        if not (name.split(".", 1)[0] in (PACKAGE, "reference")):
            continue
        path = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", [])), None
        )
        if not isinstance(path, str) or root not in Path(path).resolve().parents:
            del sys.modules[name]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))


def load_assignment(root: Path, assignment: str) -> Assignment:
    """``ASSIGNMENT`` of ``root/grader_tests/<assignment>/assignment.py``, checked."""
    where = Path(PACKAGE) / assignment / DEFINITION
    if not (root / where).is_file():
        raise TdkitError(
            f"{root / where} is missing: each assignment's grading side is the package "
            f"{PACKAGE}/{assignment}/, whose {DEFINITION} defines ASSIGNMENT "
            "(docs/instructor.md, 'Adding an assignment')."
        )
    use_course(root)
    try:
        module = importlib.import_module(f"{package_name(assignment)}.assignment")
    except Exception as error:  # noqa: BLE001 - the instructor's file: named, never a traceback
        raise TdkitError(
            f"{root / where} fails to import: {type(error).__name__}: {error}"
        ) from None
    found = getattr(module, "ASSIGNMENT", None)
    if not isinstance(found, Assignment):
        raise TdkitError(
            f"{root / where} must define ASSIGNMENT = Assignment(...) (tdkit.core.assignment)."
        )
    _check(found, root / PACKAGE / assignment, where)
    return found


def _check(found: Assignment, folder: Path, where: Path) -> None:
    names = found.group_names
    problems = []
    if not names:
        problems.append("it has no check group")
    if len(set(names)) != len(names):
        problems.append(f"two check groups share a name ({', '.join(names)})")
    problems += [f"check group {g.name!r} has no function" for g in found.groups if not g.function]
    if not (folder / f"{PROBE_MODULE}.py").is_file():
        problems.append(f"{folder / (PROBE_MODULE + '.py')} is missing")
    problems += [
        f"its sandbox file {name} is missing"
        for name in found.sandbox
        if not (folder / name).is_file()
    ]
    problems += [
        f"figure {figure.name!r} reads group {figure.group!r}, which is none of its groups"
        for figure in found.figures
        if figure.group not in names
    ]
    if found.figures and not (folder / "oracle.py").is_file():
        problems.append(
            f"it has figures, and {folder / 'oracle.py'} (reference_views()) is missing"
        )
    if problems:
        raise TdkitError(f"{where}: {'; '.join(problems)}.")


def probe_files(root: Path, assignment: str, found: Assignment) -> dict[str, str]:
    """What the sandbox job carries of the assignment: path inside the job's probe folder -> text.

    Only the probe and the files it names: the packages' ``__init__.py`` are written empty, so
    that nothing of the trusted side is imported in the sandbox.
    """
    folder = root / PACKAGE / assignment
    files = {f"{PACKAGE}/__init__.py": "", f"{PACKAGE}/{assignment}/__init__.py": ""}
    for name in (DEFINITION, f"{PROBE_MODULE}.py", *found.sandbox):
        files[f"{PACKAGE}/{assignment}/{name}"] = (folder / name).read_text(encoding="utf-8")
    return files
