"""Shared test setup: ``reference/`` importable, the offline CIFAR-10 copy located."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

if TYPE_CHECKING:
    from tdkit.core.assignment import Assignment
    from tdkit.core.course import Course
    from tdkit.trusted.grade import GradeRun
    from tdkit.untrusted.zygote import Spawner

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # reference/ is a top-level package, not installed
    sys.path.insert(0, str(REPO))
if (
    str(REPO / "tests" / "adversarial") not in sys.path
):  # hostile.py: the browser tests grade its markup case
    sys.path.insert(0, str(REPO / "tests" / "adversarial"))

# Tests run tiny tensors beside Jupyter kernels on 2 cores: spinning OpenMP threads cost 10x.
torch.set_num_threads(1)

SPAWNER: pytest.StashKey[Spawner] = pytest.StashKey()
REAL_CIFAR10 = REPO.parent / "shared" / "cifar10"  # the full offline copy beside the repo
# The modules that read servers.shared_graded_course: one xdist worker grades it for all of them.
SHARED_COURSE_MODULES = {
    "test_grading.py",
    "test_browser_reports.py",
    "test_formgrader.py",
    "test_jupyterlab.py",
}


def pytest_configure(config: pytest.Config) -> None:
    """One zygote spawner for the whole run (xdist's workers and every `tdkit grade` the tests
    start inherit TDKIT_ZYGOTE_SOCKET): the course's modules are preloaded once, not per process."""
    from tdkit.untrusted import zygote

    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get(zygote.SOCKET_ENV):
        return
    if zygote.enabled():
        spawner = zygote.Spawner()  # returns once listening; it preloads while tests are collected
        os.environ[zygote.SOCKET_ENV] = str(spawner.path)
        config.stash[SPAWNER] = spawner


def pytest_unconfigure(config: pytest.Config) -> None:
    spawner = config.stash.get(SPAWNER, None)
    if spawner is not None:
        from tdkit.untrusted import zygote

        del os.environ[zygote.SOCKET_ENV]
        spawner.close()


# The modules that cost most (CPU seconds of a serial run), started first: a long module started
# last would keep one worker busy while the others have nothing left (xdist alone orders them by
# their number of tests). Order only: no test depends on it.
LONGEST_FIRST = (
    "test_hostile.py",
    "test_incremental.py",
    *sorted(SHARED_COURSE_MODULES),
    "test_environment.py",
    "test_traps.py",
    "test_release.py",
    "test_dask.py",
    "test_student_env.py",
    "test_strongnet.py",
    "test_postgres.py",
    "test_course_grade.py",
    "test_moodle.py",
    "test_instructor_files.py",
    "test_similarity.py",
    "test_zygote_leaks.py",
    "test_oracle_cache.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: modules stay whole


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each module runs whole on one worker (its module fixtures are set up once), the modules
    sharing the graded course on the same one (xdist's own --dist loadgroup does not group
    under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shared-graded-course" if Path(module).name in SHARED_COURSE_MODULES else module

    return ModuleScheduling(config, log)


@pytest.fixture
def real_cifar10() -> Path:
    """The offline CIFAR-10 copy; skips the test where it is absent."""
    if not REAL_CIFAR10.is_dir():
        pytest.skip(
            f"no offline CIFAR-10 copy at {REAL_CIFAR10} (../shared/cifar10 beside the repo)"
        )
    return REAL_CIFAR10


COURSE_PARTS = (
    "nbgrader_config.py",
    "jupyter_server_config.py",
    "td-requirements.txt",
    "grader_tests/__init__.py",
    "reference",
)
ASSIGNMENT_PARTS = ("source", "release", "grader_tests")  # each holds <assignment>/


ONE_COURSE_DEADLINES = (
    """c.TdkitDeadlines.assignments = {
    "td_mlp": {"duedate": "2026-11-27 18:00", "extensions": {}},
    "td_cnn": {"duedate": "2026-12-04 18:00", "extensions": {}},
}""",
    'c.TdkitDeadlines.duedate = "2026-12-04 18:00"',
)


@pytest.fixture(autouse=True)
def _repository_course() -> None:
    """Tests import this repository's grading packages and reference: the modules of a course
    copy graded earlier in this process (same names, another folder) are dropped first."""
    from tdkit.core.assignment import use_course

    use_course(REPO)


def built_examples(builder: Path, into: Path) -> tuple[list[Path], list[str]]:
    """What an assignment's ``examples/<name>/build_submissions.py`` writes under ``into``, and
    which of those files differ from the repository's (stale: to build and commit again)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"build_{builder.parent.name}", builder)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    written: list[Path] = module.build(into)
    stale = [
        str(path.relative_to(into))
        for path in written
        if path.read_bytes() != (REPO / path.relative_to(into)).read_bytes()
    ]
    return written, stale


def td_cnn() -> Assignment:
    """td_cnn's definition (grader_tests/td_cnn/assignment.py), as the engine loads it."""
    from tdkit.core.assignment import load_assignment

    return load_assignment(REPO, "td_cnn")


def nbgrader_export(root: Path, out: Path) -> dict[str, dict[str, str]]:
    """nbgrader's own `nbgrader export` of the course at ``root`` into ``out``: its rows by student id."""
    import csv
    import os
    import subprocess

    scripts = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ["PATH"]}
    subprocess.run(
        [os.path.join(scripts, "nbgrader"), "export", "--to", str(out)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    with open(out, newline="") as file:
        return {row["student_id"]: row for row in csv.DictReader(file)}


def copy_course(target: Path, assignments: tuple[str, ...] = ("td_cnn",)) -> Path:
    """A fresh course directory with this repository's course files and ``assignments`` (no
    gradebook, no submissions). With td_cnn alone by default, a command that names no assignment
    works on it."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    parts = (*COURSE_PARTS, *(f"{p}/{a}" for p in ASSIGNMENT_PARTS for a in assignments))
    for part in parts:
        src = REPO / part
        (target / part).parent.mkdir(parents=True, exist_ok=True)
        if (
            part == "nbgrader_config.py"
        ):  # td_cnn's due date alone: tests set their own in its place
            config = src.read_text(encoding="utf-8")
            assert ONE_COURSE_DEADLINES[0] in config, (
                "tests/conftest.py: update ONE_COURSE_DEADLINES"
            )
            (target / part).write_text(config.replace(*ONE_COURSE_DEADLINES), encoding="utf-8")
            continue
        if src.is_dir():
            shutil.copytree(src, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target / part)
    return target


@pytest.fixture(scope="session")
def released_course(tmp_path_factory: pytest.TempPathFactory):
    """A course copy whose gradebook knows the assignment (release without re-running the solution)."""
    from tdkit.core.course import Course
    from tdkit.release.generate import release

    course = Course(copy_course(tmp_path_factory.mktemp("course")))
    release(course, verify=False)
    return course


@pytest.fixture(scope="module")
def browser_course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    """The run's shared graded course (``servers.shared_graded_course``); skips, saying
    why, before grading when Chromium or Playwright is missing."""
    from servers import require_browser, shared_graded_course  # servers imports this module

    require_browser()
    return shared_graded_course(tmp_path_factory)


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """One headless Chromium context for a browser test module (``servers.chromium``)."""
    from servers import chromium

    with chromium() as context:
        yield context
