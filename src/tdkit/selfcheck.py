"""``tdkit check NOTEBOOK``: a student runs the visible tests of their notebook locally.

Inside a course directory, the notebook runs on its assignment's grading profile (small data
that the assignment writes, so the check takes seconds and needs no download); elsewhere, on its
own parameters. Hidden tests are not in reach: the release has none, and ``tdkit.hidden.check`` does nothing in this mode. Its
imports are held to the course environment (``td-requirements.txt`` beside the notebook or given),
as in grading: a module outside it is named, and only the code that uses it fails.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tdkit.core.assignment import PACKAGE, GradingProfile
from tdkit.core.config import SANDBOX_ENV
from tdkit.core.course import Course, assignment_at
from tdkit.core.errors import TdkitError
from tdkit.release.environment import find_environment_file, read_environment
from tdkit.release.parameters import inject_parameters
from tdkit.untrusted.execute import CellError, execute_notebook
from tdkit.untrusted.import_guard import missing_module_note, notebook_outputs, recorded_modules


@dataclass(frozen=True)
class TestCell:
    grade_id: str
    points: float
    passed: bool
    message: str


@dataclass
class SelfCheck:
    notebook: Path
    tests: list[TestCell] = field(default_factory=list)
    other_errors: list[CellError] = field(default_factory=list)  # errors outside test cells
    failure: str | None = None
    seconds: float = 0.0
    packages: tuple[str, ...] = ()  # the course environment's declared packages
    missing_modules: list[str] = field(
        default_factory=list
    )  # imported from outside the environment
    not_installed: tuple[
        str, ...
    ] = ()  # declared packages this Python lacks (or has at another version)

    @property
    def passed(self) -> bool:
        return self.failure is None and all(t.passed for t in self.tests)

    def environment_notes(self) -> list[str]:
        """What the grader's page will say about the environment, first."""
        notes = [missing_module_note(m, self.packages) for m in self.missing_modules]
        if self.not_installed:
            notes.append(
                f"Paquets du cours absents ou d'une autre version ici : {', '.join(self.not_installed)}. "
                "Installez-les : pip install -r td-requirements.txt"
            )
        return notes


def _course_profile(notebook: Path) -> GradingProfile | None:
    """The grading profile of the notebook's assignment, when it or the working directory sits in
    a course directory: the assignment named by the notebook or one of its folders, or the
    course's only one. None elsewhere (a student's machine: the notebook's own parameters)."""
    here, cwd = notebook.resolve().parent, Path.cwd().resolve()
    for root in (here, *here.parents, cwd, *cwd.parents):
        if not (root / "nbgrader_config.py").is_file() or not (root / PACKAGE).is_dir():
            continue
        chosen = assignment_at(root, notebook.resolve())
        return Course(root, chosen).grading_profile() if chosen else None
    return None


def self_check(
    notebook: Path, cell_timeout: int = 300, requirements: Path | None = None
) -> SelfCheck:
    try:
        nb = nbformat.read(notebook, as_version=4)
    except FileNotFoundError:
        raise TdkitError(f"{notebook} does not exist: give the path of your .ipynb file.") from None
    except Exception as error:  # noqa: BLE001 - any parse failure gets the same advice
        raise TdkitError(
            f"{notebook} is not a readable notebook ({type(error).__name__}: {error}). Open it in Jupyter and "
            "save it again, or start again from the released notebook."
        ) from None
    environment = read_environment(requirements or find_environment_file(notebook))
    profile = _course_profile(notebook)
    prepared = inject_parameters(nb, profile.parameters, strict=False) if profile else nb
    with tempfile.TemporaryDirectory(prefix="tdkit-check-") as scratch:
        run = execute_notebook(
            prepared,
            scratch,
            cell_timeout=cell_timeout,
            env={SANDBOX_ENV: "1"},
            environment=environment.kernel_json(),
        )
    errors_by_cell = {e.index: e for e in run.errors}
    report = SelfCheck(
        notebook,
        failure=run.failure,
        seconds=run.seconds,
        packages=environment.packages,
        missing_modules=recorded_modules(notebook_outputs(run.notebook)),
        not_installed=environment.not_installed,
    )
    for index, cell in enumerate(run.notebook.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            cell_error = errors_by_cell.pop(index, None)
            message = (
                "ok"
                if cell_error is None
                else f"{cell_error.ename}: {cell_error.evalue or 'pas encore écrit'}"
            )
            passed = cell_error is None
            report.tests.append(
                TestCell(str(meta.get("grade_id")), float(meta.get("points", 0)), passed, message)
            )
    report.other_errors = list(errors_by_cell.values())
    return report
