"""The untrusted run's sandbox: no network, no instructor files, limits everywhere."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO

from tdkit.sandbox import Limits, bwrap_path, run_sandboxed

needs_bwrap = pytest.mark.skipif(
    bwrap_path() is None, reason="bubblewrap is not installed (scripts/system-deps.sh installs it as root)"
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
        [sys.executable, str(script), str(port), str(secret)], tmp_path, Limits(run_timeout=60), isolate=isolate
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
    run = run_sandboxed([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, Limits(run_timeout=2))
    assert run.timed_out and run.seconds < 20
