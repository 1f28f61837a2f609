"""Helpers for the tests that start real servers: a graded course, nbgrader's formgrader, Chromium.

Every server started here is stopped by a ``finally`` (its whole process group), whatever the test
does; screenshots go to ``test-artifacts/`` at the repository root (gitignored), or to
``$TDKIT_TEST_ARTIFACTS``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import REPO, copy_course
from markup_watch import payload_listener

from tdkit.core.course import Course
from tdkit.release.generate import release
from tdkit.trusted.grade import GradeRun, grade_all

SOLUTION = REPO / "source/td_cnn/td_cnn.ipynb"
MARKUP = "markup"  # the hostile markup submission of the shared browser course
RELEASE = REPO / "release/td_cnn/td_cnn.ipynb"
LAST_YEAR = REPO / "tests/files/not_td/td_cnn_last_year.ipynb"
SCRIPTS = os.path.dirname(sys.executable)
CHROMIUM = os.environ.get("TDKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def artifacts_dir(kind: str) -> Path:
    """Where a test's screenshots go: test-artifacts/<kind>/ (kept after the run, gitignored)."""
    root = Path(os.environ.get("TDKIT_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def script_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (nbgrader, jupyter, alembic) first on PATH."""
    return {**os.environ, "PATH": SCRIPTS + os.pathsep + os.environ.get("PATH", "")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grade_two(
    root: Path, extra: Mapping[str, nbformat.NotebookNode] | None = None
) -> tuple[Course, GradeRun]:
    """Release the course at ``root`` and grade two submissions: the solution ('sol') and the
    release notebook as students receive it ('td'), and the ``extra`` ones (student id -> notebook)."""
    course = Course(root)
    release(course, verify=False)
    notebooks = {
        "sol": nbformat.read(SOLUTION, as_version=4),
        "td": nbformat.read(RELEASE, as_version=4),
        **(extra or {}),
    }
    for student, notebook in notebooks.items():
        target = course.submitted_notebook(student)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    return course, grade_all(course, progress=lambda line: None)


def td_answered() -> nbformat.NotebookNode:
    """The release with the TD's loop as distributed and one question answered: work to grade."""
    nb = nbformat.read(RELEASE, as_version=4)
    cell = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_examples"
    )
    cell.source = "Sur huit images, trois sont bien classées : on ne peut rien conclure."
    return nb


def crashing_solution() -> nbformat.NotebookNode:
    """The solution with a typo in a cell between the training and the evaluation."""
    nb = nbformat.read(SOLUTION, as_version=4)
    index = next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "predict"
    )
    nb.cells.insert(index, nbformat.v4.new_code_cell("predictions = predcit(model, test_dataset)"))
    return nb


_GRADED: dict[str, tuple[Course, GradeRun]] = {}


def shared_graded_course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    """One SQLite-gradebook course graded by tdkit once per run, read by test_grading and the browser
    test modules: beside 'sol' and 'td' (the release as distributed), 'answered' (the release with a
    question answered), 'crash' (the solution with a failing cell), 'last_year' (another notebook)
    and MARKUP, tests/adversarial's hostile markup aimed at the payload listener."""
    if "course" not in _GRADED:
        from hostile import hostile_markup

        extra = {
            "answered": td_answered(),
            "crash": crashing_solution(),
            "last_year": nbformat.read(LAST_YEAR, as_version=4),
            MARKUP: hostile_markup(payload_listener().url),
        }
        _GRADED["course"] = grade_two(copy_course(tmp_path_factory.mktemp("graded-course")), extra)
    return _GRADED["course"]


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, SIGKILL what is left after 10 s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Extensions installed in the venv that no test here needs (they only slow the start).
_UNUSED_EXTENSIONS = (
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.validate_assignment",
    "notebook",
    "jupyter_lsp",
    "jupytext",
    "jupyterlab_jupytext",
    "notebook_shim",
    "jupyter_server_terminals",
)


@contextmanager
def _jupyter(
    app: str, course_root: Path, workdir: Path, lab: bool, timeout: float
) -> Iterator[tuple[str, str]]:
    """``jupyter APP --config=jupyter_server_config.py`` from the course directory, as docs/ta.md
    says, on 127.0.0.1 and a free port, with its own Jupyter config, data and runtime dirs (already
    under ``workdir`` are kept). Yields (base URL, token); the server is stopped on exit, whatever happened."""
    jupyter = shutil.which("jupyter", path=SCRIPTS) or shutil.which("jupyter")
    if jupyter is None:
        pytest.skip(
            "no jupyter executable beside the interpreter: install the kit with `pip install -e .`"
        )
    config_dir, data_dir, runtime_dir = (workdir / name for name in ("config", "data", "runtime"))
    for folder in (config_dir, data_dir, runtime_dir):
        folder.mkdir(parents=True, exist_ok=True)
    extensions = {
        "nbgrader.server_extensions.formgrader": True,
        "jupyterlab": lab,
        **dict.fromkeys(_UNUSED_EXTENSIONS, False),
    }
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions}}), encoding="utf-8"
    )
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **script_env(),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    log_path = workdir / f"{app}.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                jupyter,
                app,
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={course_root}",
                "--config=jupyter_server_config.py",  # the course's, as docs/ta.md says: formgrader's CSP
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            cwd=course_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter {app} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            try:
                url = f"{base}/formgrader/api/assignments?token={token}"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter {app} not up after {timeout:.0f} s:\n{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc)


@contextmanager
def formgrader(
    course_root: Path, workdir: Path, timeout: float = 90.0
) -> Iterator[tuple[str, str]]:
    """nbgrader's formgrader: ``jupyter server`` with only the formgrader extension."""
    with _jupyter("server", course_root, workdir, lab=False, timeout=timeout) as running:
        yield running


# Lab's default renders only the cells near the viewport; every cell must be on the page to be checked.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}
}


@contextmanager
def jupyterlab(
    course_root: Path, workdir: Path, timeout: float = 120.0
) -> Iterator[tuple[str, str]]:
    """JupyterLab as docs/ta.md tells a TA to start it (``jupyter lab --config=jupyter_server_config.py``),
    formgrader included, with every notebook cell rendered (``LAB_SETTINGS``)."""
    for name, settings in LAB_SETTINGS.items():
        path = workdir / "config" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings), encoding="utf-8")
    with _jupyter("lab", course_root, workdir, lab=True, timeout=timeout) as running:
        yield running


def assert_untrusted(base: str, token: str, course: Course, student: str) -> None:
    """The autograded notebook carries no signature or trust flag, and the Jupyter server (which
    JupyterLab asks) sees every code cell as untrusted."""
    on_disk = nbformat.read(course.autograded_notebook(student), as_version=4)
    assert "signature" not in on_disk.metadata and "trusted" not in on_disk.metadata, student
    assert all("trusted" not in cell.metadata for cell in on_disk.cells), student
    relative = course.autograded_notebook(student).relative_to(course.root).as_posix()
    model = get_json(f"{base}/api/contents/{relative}?token={token}")
    code = [cell for cell in model["content"]["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["metadata"].get("trusted") is False for cell in code), student


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.loads(reply.read())


def require_browser() -> None:
    """Skip, saying why, when Playwright or Debian's Chromium is missing (before any slow setup)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set TDKIT_CHROMIUM)")


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (never a downloaded browser); skips with the
    reason when either is missing. Yields a browser context (1280x900)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            yield context
        finally:
            browser.close()
