"""What the notebook's hidden test cells call: ``check("train", globals())``.

- In the grading sandbox (``TDKIT_SANDBOX`` set) it does nothing: the grader probes the
  kernel after the run and judges outside the sandbox.
- Anywhere else (``tdkit release`` on the solution, an instructor's Jupyter, plain
  ``nbgrader autograde``) it probes the namespace and runs the group's hidden checks on the
  spot, failing the cell with every failed check's message.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tdkit.core.assignment import PACKAGE, use_course
from tdkit.core.config import GRADER_TESTS_ENV, SANDBOX_ENV
from tdkit.core.course import assignment_at, course_assignments
from tdkit.core.errors import TdkitError
from tdkit.trusted.checks import PASSED_MESSAGE, run_checks


def find_grader_tests(start: Path | None = None) -> Path:
    """``$TDKIT_GRADER_TESTS`` (``grader_tests/<assignment>``, set by ``tdkit release``), else the
    grading side of the assignment that the working directory is in, in the first course above it
    (``source/<name>/`` -> ``grader_tests/<name>``), or of the course's only assignment."""
    if os.environ.get(GRADER_TESTS_ENV):
        return Path(os.environ[GRADER_TESTS_ENV])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PACKAGE / "__init__.py").is_file():
            chosen = assignment_at(folder, here)
            if chosen is not None:
                return folder / PACKAGE / chosen
            found = ", ".join(course_assignments(folder)) or "(none)"
            raise TdkitError(
                f"{folder} has assignments {found}: run from the assignment's "
                f"folder (source/<name>/) or set {GRADER_TESTS_ENV}=/path/to/grader_tests/<name>."
            )
    raise TdkitError(
        f"No grader_tests/ found above {here}: run from the course directory or set "
        f"{GRADER_TESTS_ENV}=/path/to/grader_tests/<assignment>."
    )


def check(group: str, namespace: Mapping[str, Any]) -> None:
    if os.environ.get(SANDBOX_ENV):
        return
    # Imported here: it needs torch, which the kernel has; release.py only reads GRADER_TESTS_ENV.
    from tdkit.untrusted.probe import run_probe

    tests = find_grader_tests()
    use_course(tests.parent.parent)
    with tempfile.TemporaryDirectory(prefix="tdkit-hidden-") as out:
        run_probe(namespace, out, tests.name, groups=[group])
        results = run_checks(out, tests, groups=[group])
    if not results:
        raise TdkitError(f"{tests} has no check for {group!r}.")
    failed = [r for r in results if not r.passed]
    if failed:
        raise AssertionError("\n".join(f"{r.check_id} : {r.message}" for r in failed))
    print(f"{group} : {len(results)} vérifications cachées réussies.")
    for result in results:
        if result.message != PASSED_MESSAGE:
            print(f"{result.check_id} : {result.message}")
