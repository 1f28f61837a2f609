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


def grade_two(root: Path, extra: Mapping[str, nbformat.NotebookNode] | None = None) -> tuple[Course, GradeRun]:
    """Release the course at ``root`` and grade two submissions: the solution ('sol') and the
    release notebook as students receive it ('td'), and the ``extra`` ones (student id -> notebook)."""
    course = Course(root)
    release(course, verify=False)
    notebooks = {"sol": nbformat.read(SOLUTION, as_version=4), "td": nbformat.read(RELEASE, as_version=4), **(extra or {})}
    for student, notebook in notebooks.items():
        target = course.submitted_notebook(student)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    return course, grade_all(course, progress=lambda line: None)


_GRADED: dict[str, tuple[Course, GradeRun]] = {}


def shared_graded_course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, GradeRun]:
    """One SQLite-gradebook course graded by tdkit, shared by the browser test modules of a run;
    beside 'sol' and 'td', MARKUP is tests/adversarial's hostile markup aimed at the payload listener."""
    if "course" not in _GRADED:
        from hostile import hostile_markup

        extra = {MARKUP: hostile_markup(payload_listener().url)}
        _GRADED["course"] = grade_two(copy_course(tmp_path_factory.mktemp("browser-course")), extra)
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


@contextmanager
def formgrader(course_root: Path, workdir: Path, timeout: float = 90.0) -> Iterator[tuple[str, str]]:
    """nbgrader's formgrader (a Jupyter server with the nbgrader formgrader extension) over the
    course, on 127.0.0.1 and a free port, with its own Jupyter config, data and runtime dirs.
    Yields (base URL, token); the server is stopped on exit, whatever happened."""
    jupyter = shutil.which("jupyter", path=SCRIPTS) or shutil.which("jupyter")
    if jupyter is None:
        pytest.skip("no jupyter executable beside the interpreter: install the kit with `pip install -e .`")
    config_dir, data_dir, runtime_dir = (workdir / name for name in ("config", "data", "runtime"))
    for folder in (config_dir, data_dir, runtime_dir):
        folder.mkdir(parents=True, exist_ok=True)
    # Only the formgrader: the other extensions installed in the venv slow the start and are not tested.
    extensions = {
        "nbgrader.server_extensions.formgrader": True,
        "nbgrader.server_extensions.assignment_list": False,
        "nbgrader.server_extensions.course_list": False,
        "nbgrader.server_extensions.validate_assignment": False,
        "jupyterlab": False,
        "notebook": False,
        "jupyter_lsp": False,
        "jupytext": False,
        "jupyterlab_jupytext": False,
        "notebook_shim": False,
        "jupyter_server_terminals": False,
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
    log_path = workdir / "formgrader.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                jupyter, "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={course_root}",
                "--config=jupyter_server_config.py",  # the course's, as the README says: formgrader's CSP
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            cwd=course_root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"formgrader exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                url = f"{base}/formgrader/api/assignments?token={token}"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"formgrader not up after {timeout:.0f} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc)


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
