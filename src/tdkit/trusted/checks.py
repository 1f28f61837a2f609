"""Run the hidden checks (``grader_tests/``, pytest) on a probe's artifacts.

Each check is a pytest test marked ``@hidden_check("group/name", points=...)``; its failure
message, in French, is what the student reads. Runs on the trusted side only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pluggy
import pytest

from tdkit.core.assignment import package_name
from tdkit.core.course import Course
from tdkit.reports.results import CheckResult
from tdkit.trusted import check_fixtures
from tdkit.trusted.check_fixtures import ARTIFACTS

F = TypeVar("F", bound=Callable[..., Any])
PASSED_MESSAGE = "Réussi."
NOT_EVALUATED = (
    "Non évalué : le notebook rendu n'a pas été exécuté (la raison est en haut de la page)."
)
UNCHANGED = "Non écrit : rien n'a été modifié dans le notebook distribué (voir en haut de la page)."


def hidden_check(check_id: str, points: float) -> Callable[[F], F]:
    """Mark a test as the check ``check_id`` (``<group>/<name>``) worth ``points``; ``<group>`` is
    one of the assignment's check groups (``ASSIGNMENT.groups``), or the checks refuse to run."""
    if "/" not in check_id:
        raise ValueError(f"check id {check_id!r} must read '<group>/<name>'")
    return pytest.mark.hidden_check(id=check_id, points=float(points))


def fail(message: str) -> NoReturn:
    """Fail the current check with ``message`` (French, for the student), without a traceback."""
    pytest.fail(message, pytrace=False)


def require(condition: object, message: str) -> None:
    """Fail the current check with ``message`` unless ``condition`` holds."""
    if not condition:
        fail(message)


def not_evaluated(result: CheckResult, message: str = NOT_EVALUATED) -> CheckResult:
    """``result`` failed with ``message``, a pointer to the one message at the top that says why."""
    return CheckResult(result.check_id, False, 0.0, result.max_points, message)


def _message(excinfo: pytest.ExceptionInfo[BaseException] | None, notes: list[str]) -> str:
    if excinfo is None:
        # A passed check may still have something to say (e.g. another function is at fault).
        return " ".join([PASSED_MESSAGE, *notes])
    error = excinfo.value
    if isinstance(error, pytest.fail.Exception):
        return str(error.msg)
    # A check that breaks on a strange value is failed, and says why, rather than crashing the batch.
    return f"Vérification impossible sur ce que renvoie la fonction ({type(error).__name__} : {error})."


class _Collector:
    """pytest plugin: selects the requested groups and records each check's outcome."""

    def __init__(
        self,
        known: Iterable[str],
        groups: set[str] | None,
        artifacts: Path,
        views: Callable[[], object] | None,
        reference_out: Path | None,
    ) -> None:
        self.known = tuple(known)
        self.groups = groups
        self.artifacts = artifacts
        self.views = views
        self.reference_out = reference_out
        self.results: dict[str, CheckResult] = {}

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers", "hidden_check(id, points): a hidden check and its points"
        )
        config.stash[ARTIFACTS] = self.artifacts

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The reports' reference comes from this run's oracle, never from a second computation."""
        if self.reference_out is not None and self.views is not None:
            self.reference_out.write_text(json.dumps(self.views()))

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        selected: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            marker = item.get_closest_marker("hidden_check")
            if marker is None:
                raise pytest.UsageError(f"{item.nodeid} has no @hidden_check(id, points) marker")
            group = marker.kwargs["id"].split("/", 1)[0]
            if group not in self.known:
                raise pytest.UsageError(
                    f"{item.nodeid}: check id {marker.kwargs['id']!r}: its group is none of the "
                    f"assignment's ({', '.join(self.known)}, in assignment.py)"
                )
            (selected if self.groups is None or group in self.groups else deselected).append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = selected

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
        outcome = yield
        report = outcome.get_result()
        marker = item.get_closest_marker("hidden_check")
        if marker is None or not (report.when == "call" or report.failed):
            return
        check_id, max_points = marker.kwargs["id"], float(marker.kwargs["points"])
        if check_id in self.results and self.results[check_id].passed is False:
            return
        passed = report.passed and report.when == "call"
        notes = [str(value) for name, value in item.user_properties if name == "note"]
        self.results[check_id] = CheckResult(
            check_id,
            passed,
            max_points if passed else 0.0,
            max_points,
            _message(call.excinfo, notes),
        )


class ChecksCrashed(Exception):
    """pytest could not run the hidden checks at all (a broken grader_tests/)."""


# Neither the grader's own PYTEST_ADDOPTS (a test session's, say) nor the pytest plugins installed
# beside tdkit (pytest-xdist, pytest-randomly...) apply to the hidden checks.
CHECKS_ENVIRON: dict[str, str | None] = {
    "PYTEST_ADDOPTS": None,
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
}


def _set_environ(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Set (or, for None, remove) each variable; returns what they were."""
    before = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return before


@contextlib.contextmanager
def _checks_environ() -> Iterator[None]:
    before = _set_environ(CHECKS_ENVIRON)
    try:
        yield
    finally:
        _set_environ(before)


def run_checks(
    artifacts_dir: str | Path,
    tests_dir: str | Path,
    groups: Iterable[str] | None = None,
    reference_out: Path | None = None,
) -> list[CheckResult]:
    """Run every check of ``tests_dir`` (an assignment's ``grader_tests/<name>``, or of ``groups``)
    against ``artifacts_dir``.

    ``reference_out``: where the checks' oracle writes the reference's views (its figures)."""
    tests = Path(tests_dir)
    # Loaded once per process; the modules of another course's checks are dropped each time.
    definition = Course(tests.resolve().parent.parent, tests.name).definition()
    views = None
    if definition.figures:  # the oracle's reference_views(): name -> values of each figure

        def views() -> object:
            return importlib.import_module(f"{package_name(tests.name)}.oracle").reference_views()

    collector = _Collector(
        definition.group_names,
        set(groups) if groups is not None else None,
        Path(artifacts_dir).resolve(),
        views,
        reference_out,
    )
    args = [
        str(tests_dir),
        "-p",
        "no:cacheprovider",
        # Its full garbage collections cost up to a second per submission.
        "-p",
        "no:unraisableexception",
        # Built-in plugins the checks never use (with the autoload off: 0.66 -> 0.52 s a submission)
        # (junitxml stays: the checks' notes go through its record_property).
        *("-p", "no:logging", "-p", "no:doctest", "-p", "no:pastebin", "-p", "no:stepwise"),
        *("-p", "no:legacypath"),
        "-o",
        "python_files=checks_*.py",
        "--capture=no",
        "-q",
        "--no-header",
        "-W",
        "ignore",
        # The options of a pytest.ini or pyproject.toml above the course do not apply (-n would
        # start pytest-xdist workers per submission, --collect-only would judge nothing).
        "-o",
        "addopts=",
    ]
    import torch  # here, not at the top: a run that keeps every result needs no torch

    output = io.StringIO()
    # The checks' tensors are tiny: one thread, since idle threads spinning for 2 cores cost 10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(output), _checks_environ():
            code = pytest.main(args, plugins=[collector, check_fixtures])
    finally:
        torch.set_num_threads(threads)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise ChecksCrashed(
            f"pytest exited with {code!r} on {tests_dir}:\n{output.getvalue()[-4000:]}"
        )
    return sorted(collector.results.values(), key=lambda r: r.check_id)
