"""Run an untrusted command: bubblewrap where present, resource limits everywhere.

Under bubblewrap the command sees no network, none of the instructor's files (only the
Python installation, tdkit's own package and system libraries, read-only) and can write
only its scratch directory and a private ``/tmp``. Wall-clock, CPU, memory and file-size
limits apply with or without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tdkit

SANDBOX_ENV = "TDKIT_SANDBOX"
# System paths a Python kernel needs; bound read-only when they exist.
SYSTEM_PATHS = ("/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
                "/etc/nsswitch.conf", "/etc/localtime", "/etc/alternatives")
_warned_unisolated = False


@dataclass(frozen=True)
class Limits:
    """Limits of one submission's untrusted run (configurable in nbgrader_config.py, see grade.py)."""

    cell_timeout: int = 120  # seconds per notebook cell
    run_timeout: int = 300  # seconds for the whole run, kernel start and probe included
    memory_mb: int = 6144  # address space of the run
    cpu_seconds: int = 600  # CPU time of the run
    max_file_mb: int = 256  # largest file the run may write


@dataclass(frozen=True)
class SandboxRun:
    returncode: int | None  # None when killed at the wall-clock limit
    timed_out: bool
    seconds: float
    output: str  # tail of stdout and stderr
    isolated: bool  # ran under bubblewrap


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _readonly_roots() -> list[str]:
    package = str(Path(tdkit.__file__).resolve().parent)
    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), package}
    return sorted(r for r in roots if not r.startswith("/usr/"))


def sandbox_env(scratch: Path) -> dict[str, str]:
    """The whole environment of the run: nothing of the grader's own environment leaks in."""
    return {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "LANG": "C.UTF-8",
        SANDBOX_ENV: "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "JUPYTER_RUNTIME_DIR": str(scratch / ".jupyter-runtime"),
        "IPYTHONDIR": str(scratch / ".ipython"),
        "MPLCONFIGDIR": str(scratch / ".matplotlib"),
        "HF_HOME": str(scratch / ".hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def bwrap_command(bwrap: str, argv: Sequence[str], scratch: Path, readonly: Sequence[Path] = ()) -> list[str]:
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for path in SYSTEM_PATHS:
        if os.path.exists(path):
            command += ["--ro-bind", path, path]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            command += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    for root in [*_readonly_roots(), *map(str, readonly)]:
        command += ["--ro-bind", root, root]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    command += ["--bind", str(scratch), str(scratch), "--chdir", str(scratch)]
    for key, value in sandbox_env(scratch).items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


def run_sandboxed(
    argv: Sequence[str], scratch: Path, limits: Limits, *, readonly: Sequence[Path] = (), isolate: bool = True
) -> SandboxRun:
    """Run ``argv`` with ``scratch`` as its only writable directory; never raises for its faults."""
    global _warned_unisolated
    bwrap = bwrap_path() if isolate else None
    if bwrap is None and not _warned_unisolated:
        print(
            "tdkit: bubblewrap (bwrap) not found: submissions run with resource limits only, without "
            "network and file isolation. Install it with 'apt-get install bubblewrap'.",
            file=sys.stderr,
        )
        _warned_unisolated = True
    command = bwrap_command(bwrap, argv, scratch, readonly) if bwrap else list(argv)
    limited = [sys.executable, "-m", "tdkit.limits", str(limits.memory_mb), str(limits.cpu_seconds),
               str(limits.max_file_mb), "--", *command]
    log = scratch / ".sandbox.log"
    started = time.perf_counter()
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            limited,
            cwd=scratch,
            env=sandbox_env(scratch),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=limits.run_timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            returncode, timed_out = None, True
        finally:
            # The whole process group goes, kernel included, whatever state it is in.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    with open(log, "rb") as sink:
        sink.seek(max(0, log.stat().st_size - 8000))
        output = sink.read().decode("utf-8", errors="replace")
    return SandboxRun(returncode, timed_out, time.perf_counter() - started, output, bwrap is not None)
