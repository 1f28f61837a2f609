"""The untrusted run's sandbox: no network, no instructor files, limits everywhere."""

from __future__ import annotations

import os
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from tdkit.core.config import Limits, limits_from_config
from tdkit.core.errors import TdkitError
from tdkit.trusted.settings import grading_settings
from tdkit.untrusted.sandbox import bwrap_path, run_sandboxed

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None,
    reason="bubblewrap is not installed (scripts/system-deps.sh installs it as root)",
)

PROBE = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    print("NETWORK:open")
except OSError as error:
    print("NETWORK:blocked", error)
try:
    open(sys.argv[2]).read()
    print("READ:open")
except OSError as error:
    print("READ:blocked", error)
"""


@pytest.fixture
def listening_port() -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _run(tmp_path: Path, port: int, *, isolate: bool) -> str:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    secret = REPO / "reference" / "td_cnn.py"
    run = run_sandboxed(
        [sys.executable, str(script), str(port), str(secret)],
        tmp_path,
        Limits(run_timeout=60),
        isolate=isolate,
    )
    assert run.returncode == 0, run.output
    return run.output


@needs_bwrap
def test_sandbox_blocks_network_and_reference(tmp_path: Path, listening_port: int) -> None:
    """Under bubblewrap, does a connection to a local server fail and is reference/ unreadable?"""
    output = _run(tmp_path, listening_port, isolate=True)
    assert "NETWORK:blocked" in output
    assert "READ:blocked" in output


def test_control_without_sandbox_reaches_both(tmp_path: Path, listening_port: int) -> None:
    """Control: without isolation the same script connects and reads, so the test above means something."""
    output = _run(tmp_path, listening_port, isolate=False)
    assert "NETWORK:open" in output and "READ:open" in output


def test_wall_clock_limit_kills_the_run(tmp_path: Path) -> None:
    """Is a run that sleeps past its wall-clock limit killed and reported as timed out?"""
    run = run_sandboxed(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, Limits(run_timeout=2)
    )
    assert run.timed_out and run.seconds < 20


@needs_bwrap
def test_matplotlib_starts_without_a_fontconfig_error(tmp_path: Path) -> None:
    """Does a run's first `import matplotlib.pyplot` (a fresh font cache, as on the plain path) print
    nothing, instead of a Fontconfig error in the student's import cell?"""
    run = run_sandboxed(
        [sys.executable, "-c", "import matplotlib.pyplot; print('IMPORTED')"],
        tmp_path,
        Limits(run_timeout=120),
    )
    assert run.returncode == 0, run.output
    assert run.output.strip() == "IMPORTED", run.output


# --- limits, process limit, outputs, artifacts, gradebook (issue 4) --------------------------


FORK_BOMB = """
import os, time
n = 0
while n < 400:
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
    except OSError as error:
        print("FORK:refused after", n, error)
        break
else:
    print("FORK:unbounded")
"""


def test_limits_config_defaults_values_and_unknown_keys() -> None:
    """Are c.TdkitLimits values read, defaults kept, and an unknown key an error naming the valid ones?"""
    from traitlets.config import Config

    config = Config()
    config.TdkitLimits.cell_timeout = 7
    limits = limits_from_config(config)
    assert limits.cell_timeout == 7 and limits.run_timeout == Limits().run_timeout
    config.TdkitLimits.cell_timout = 5
    with pytest.raises(TdkitError, match="cell_timout.*valid keys: cell_timeout, cpu_seconds"):
        limits_from_config(config)
    bad = Config()
    bad.TdkitLimits.memory_mb = 0
    with pytest.raises(TdkitError, match="positive"):
        limits_from_config(bad)


def test_course_config_sets_the_limits() -> None:
    """Does the course's own nbgrader_config.py hold the limits tdkit uses?"""
    from tdkit.core.course import Course

    assert grading_settings(Course(REPO, "td_cnn")).limits == Limits()


@needs_bwrap
@pytest.mark.skipif(
    os.geteuid() != 0, reason="the per-run uid (which makes RLIMIT_NPROC hold) needs a root grader"
)
def test_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    """Does a fork loop hit the process limit (Linux ignores RLIMIT_NPROC for root: the run has its own uid)?"""
    script = tmp_path / "bomb.py"
    script.write_text(FORK_BOMB)
    run = run_sandboxed(
        [sys.executable, str(script)], tmp_path, Limits(run_timeout=30, max_processes=64)
    )
    assert "FORK:refused after" in run.output, run.output
    assert run.seconds < 20


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="the per-run uid needs a root grader")
def test_run_cannot_write_grader_files_in_its_scratch(tmp_path: Path) -> None:
    """Is the run another user than the grader (a root-owned file in its scratch stays read-only)?"""
    (tmp_path / "locked.txt").write_text("grader")
    script = tmp_path / "w.py"
    script.write_text("import os\nprint('UID', os.getuid())\n")
    run = run_sandboxed([sys.executable, str(script)], tmp_path, Limits(run_timeout=30))
    assert "UID 0" not in run.output and "UID 6" in run.output, run.output


def test_outputs_are_capped_while_executing(tmp_path: Path) -> None:
    """Does a cell printing 6 MB keep only the output budget, with a French note?"""
    from tdkit.untrusted.execute import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("for _ in range(6):\n    print('x' * (1024 * 1024))"),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    execution = execute_notebook(nb, tmp_path, cell_timeout=60, max_output_bytes=1024 * 1024)
    assert execution.truncated and execution.failure is None
    size = len(nbformat.writes(execution.notebook))
    assert size < 2 * 1024 * 1024
    assert "Sortie tronquée" in nbformat.writes(execution.notebook)


def test_artifacts_behind_symlinks_are_not_read(tmp_path: Path) -> None:
    """Are artifacts read only as regular files in a real folder (no symlinked folder or file)?"""
    from tdkit.untrusted.job import collect_artifacts

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.json").write_text('{"status": "ok"}')
    (tmp_path / "artifacts").symlink_to(elsewhere)
    assert collect_artifacts(tmp_path / "artifacts", ("train", "predict")) == {}
    real = tmp_path / "real"
    real.mkdir()
    (real / "train.json").symlink_to(elsewhere / "train.json")
    (real / "predict.json").write_text('{"status": "ok"}')
    assert set(collect_artifacts(real, ("train", "predict"))) == {"predict.json"}


def test_gradebook_update_is_all_or_nothing(
    released_course, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Does a failure in the middle of one student's update leave the gradebook without that student?"""
    from nbgrader.api import Gradebook, MissingEntry

    from tdkit.trusted.gradebook import record_grades

    calls = {"n": 0}
    real = Gradebook.find_grade

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed mid-update")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Gradebook, "find_grade", failing)
    stamp = datetime.now(timezone.utc).isoformat()
    with pytest.raises(RuntimeError):
        deadlines = grading_settings(released_course).deadlines
        record_grades(released_course, "half_written", [], None, stamp, deadlines)
    monkeypatch.undo()
    with (
        Gradebook(released_course.db_url, released_course.course_id) as gb,
        pytest.raises(MissingEntry),
    ):
        gb.find_submission(released_course.assignment, "half_written")


def test_symlinked_student_folder_is_refused(released_course, tmp_path: Path) -> None:
    """Is a submission reached through a symlinked folder refused without being read?"""
    from tdkit.intake.submission import UnreadableSubmission, read_submission

    outside = tmp_path / "outside" / released_course.assignment
    outside.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), outside / f"{released_course.assignment}.ipynb")
    link = released_course.submitted / "sneaky"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside.parent)
    try:
        with pytest.raises(UnreadableSubmission, match="lien symbolique"):
            read_submission(released_course, "sneaky", 10**7, 100)
    finally:
        link.unlink()
