"""``tdkit release``: check the solution, generate the student notebook, prove it leaks nothing.

1. Read the course environment (``td-requirements.txt``): every package installed here, the
   notebook's listing of it rewritten; then sync the jupytext pair from the Markdown source.
2. Refuse a solution that imports a module outside the environment, then execute it top to
   bottom on synthetic data with its imports held to the environment (as in grading): every
   visible and hidden test must pass (hidden tests call the hidden checks against the reference).
3. Generate the release with nbgrader's ``generate_assignment`` (configured pipeline) into a
   scratch directory.
4. Refuse it if any solution or hidden-test line leaks, or if the buggy ``train`` stub is
   missing; only then write ``release/<assignment>/<assignment>.ipynb``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI

from tdkit.core.config import GRADER_TESTS_ENV
from tdkit.core.course import Course, in_process_alembic_head
from tdkit.core.errors import TdkitError
from tdkit.core.files import write_atomically
from tdkit.core.gradebook_file import check_gradebook
from tdkit.release.environment import (
    ENVIRONMENT_FILE,
    CourseEnvironment,
    grading_environment,
    imports_outside,
    with_listing,
)
from tdkit.release.leaks import find_leaks, missing_stub_lines
from tdkit.release.notebooks import read_source, stable_ids, sync_pair
from tdkit.release.parameters import inject_parameters
from tdkit.untrusted.execute import execute_notebook
from tdkit.untrusted.import_guard import notebook_outputs, recorded_modules


@dataclass(frozen=True)
class ReleaseResult:
    release_path: Path
    pair_path: Path
    changed: bool  # the release file was rewritten with new content
    verified: bool  # the solution ran and passed every test before writing
    verify_seconds: float
    packages: tuple[str, ...] = ()  # the course environment, as listed in the notebook


def check_imports(
    course: Course, source: nbformat.NotebookNode, environment: CourseEnvironment
) -> None:
    """Refuse a solution that imports a module the students' environment does not provide."""
    outside = imports_outside(source, environment)
    if outside:
        listed = "\n  ".join(f"cell {index}: {module}" for index, module in outside)
        raise TdkitError(
            f"The solution imports modules outside the course environment ({ENVIRONMENT_FILE}), so nothing was "
            f"released:\n  {listed}\nAdd their packages to {environment.path} (one a line) and run 'make release', "
            f"or remove these imports from {course.source_md}."
        )


def verify_solution(
    course: Course, source: nbformat.NotebookNode, environment: CourseEnvironment | None = None
) -> float:
    """Run the solution on synthetic data, its imports held to ``environment``; raise listing every
    failing cell. Returns seconds."""
    parameters = course.release_profile().parameters
    nb = inject_parameters(source, parameters)
    with tempfile.TemporaryDirectory(prefix="tdkit-verify-") as scratch:
        run = execute_notebook(
            nb,
            scratch,
            allow_errors=True,
            env={GRADER_TESTS_ENV: str(course.grader_tests)},
            environment=environment.kernel_json() if environment is not None else None,
        )
    missing = recorded_modules(notebook_outputs(run.notebook))
    if not run.ok or missing:
        details = [f"cell {e.index} ({e.cell_id}): {e.ename}: {e.evalue}" for e in run.errors]
        details += [f"imports {module}, outside {ENVIRONMENT_FILE}" for module in missing]
        if run.failure:
            details.append(run.failure)
        raise TdkitError(
            "The solution notebook does not pass its own tests on synthetic data, so nothing was released:\n  "
            + "\n  ".join(details)
            + f"\nFix {course.source_md} (run it in Jupyter with its parameters set to "
            f"{dict(parameters)!r}) and run 'tdkit release' again."
        )
    return run.seconds


def generate_release(course: Course, db_url: str | None = None) -> nbformat.NotebookNode:
    """nbgrader's generate_assignment into a scratch directory; returns the student notebook.

    It registers the assignment's cells in the gradebook: the course's, or ``db_url``'s.
    """
    with tempfile.TemporaryDirectory(prefix="tdkit-release-") as scratch:
        in_process_alembic_head()
        config = course.nbgrader_config()
        config.CourseDirectory.release_directory = str(Path(scratch) / "release")
        if db_url is not None:
            config.CourseDirectory.db_url = db_url
        api = NbGraderAPI(config=config)
        outcome = api.generate_assignment(course.assignment, force=True, create=True)
        produced = Path(scratch) / "release" / course.assignment / f"{course.assignment}.ipynb"
        if not outcome["success"] or not produced.is_file():
            raise TdkitError(
                f"nbgrader generate_assignment failed:\n{outcome.get('error') or ''}\n{outcome.get('log') or ''}\n"
                f"Run 'nbgrader generate_assignment {course.assignment} --force' in {course.root} for details."
            )
        extra = sorted(
            str(p.relative_to(produced.parent)) for p in produced.parent.rglob("*") if p != produced
        )
        if extra:
            raise TdkitError(
                f"nbgrader would release files beside the notebook: {extra}. Add them to "
                "c.CourseDirectory.ignore in nbgrader_config.py (the .md source is the full solution)."
            )
        return cast(nbformat.NotebookNode, nbformat.read(produced, as_version=4))


def release_text(released: nbformat.NotebookNode) -> str:
    """The bytes of release/<assignment>/<assignment>.ipynb for a generated release."""
    return cast(str, nbformat.writes(stable_ids(released))) + "\n"


def is_registered(course: Course) -> bool:
    """Does the gradebook know the assignment's notebook (its cells, points, hidden tests)?"""
    in_process_alembic_head()
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            gb.find_notebook(course.assignment, course.assignment)
        except MissingEntry:
            return False
    return True


def register_release(course: Course) -> bool:
    """Register the committed release in a gradebook that lacks it (a fresh clone), as
    ``tdkit release`` does, without rewriting release/. True when it registered.

    The source pair is first generated against a throwaway gradebook: if it does not give the
    committed release byte for byte, nothing is registered and the error names the fix.
    """
    if is_registered(course):
        return False
    if not course.release_notebook.is_file():
        raise TdkitError(f"{course.release_notebook} is missing: run 'tdkit release' first.")
    with tempfile.TemporaryDirectory(prefix="tdkit-register-") as scratch:
        generated = release_text(
            generate_release(course, f"sqlite:///{Path(scratch) / 'gradebook.db'}")
        )
    if generated != course.release_notebook.read_text(encoding="utf-8"):
        raise TdkitError(
            f"The gradebook does not know {course.assignment} yet, and the committed {course.release_notebook} "
            f"is not what {course.source_md.parent / (course.assignment + '.ipynb')} releases, so nobody was "
            "graded: run 'tdkit release' (then commit release/) and grade again."
        )
    generate_release(course)
    return True


def release(course: Course, *, verify: bool = True) -> ReleaseResult:
    course.definition()  # the assignment's grading side, checked before anything is written
    environment = grading_environment(course.root)
    check_gradebook(
        course
    )  # nbgrader registers the cells there: a locked one stops us before any write
    markdown = course.source_md.read_text(encoding="utf-8")
    listed = with_listing(markdown, environment)
    if listed != markdown:
        write_atomically(course.source_md, listed)
    pair = sync_pair(course.source_md)
    source = read_source(course.source_md)
    check_imports(course, source, environment)
    seconds = verify_solution(course, source, environment) if verify else 0.0
    released = stable_ids(generate_release(course))
    leaks = find_leaks(source, released)
    if leaks:
        listed = "\n  ".join(
            f"cell {leak.cell_index}: {leak.kind}: {leak.line}" for leak in leaks[:20]
        )
        raise TdkitError(
            f"The generated release leaks {len(leaks)} secret line(s); nothing was written:\n  {listed}\n"
            "Put these lines inside a solution or hidden-test region only, or outside all of them."
        )
    missing = missing_stub_lines(source, released)
    if missing:
        raise TdkitError(
            f"The release lacks {len(missing)} line(s) of its release stub (e.g. {missing[0]!r}); nothing was "
            "written. Check that nbgrader_config.py registers tdkit.release.stub.ClearSolutionsWithStubs."
        )
    text = release_text(released)
    target = course.release_notebook
    changed = not target.is_file() or target.read_text(encoding="utf-8") != text
    if changed:
        write_atomically(target, text)
    return ReleaseResult(target, pair, changed, verify, seconds, environment.packages)
