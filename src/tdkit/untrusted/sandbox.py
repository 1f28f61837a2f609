"""Run an untrusted command: bubblewrap where present, resource limits everywhere.

Under bubblewrap the command sees no network, none of the instructor's files (only the
Python installation, tdkit's own package and system libraries, read-only) and can write
only its scratch directory and a private ``/tmp``. Wall-clock, CPU, memory, file-size and
process limits apply with or without it. When the grader runs as root, each run also gets a
user id of its own (``claim_uid``): the process limit then holds (Linux ignores
``RLIMIT_NPROC`` for root), the run cannot write any file it does not own, and every process it
left behind is killed by uid at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tdkit.core.config import KILL_ALL_ENV, SANDBOX_ENV, Limits
from tdkit.core.errors import TdkitError

# Dedicated user ids for runs when the grader is root, one per concurrent run (claimed by lock).
UID_BASE, UID_COUNT = 61000, 1000
UID_LOCKS = Path("/tmp/tdkit-uids")
# System paths a Python kernel needs; bound read-only when they exist.
SYSTEM_PATHS = (
    "/usr",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/alternatives",
    # matplotlib's first import lists the fonts (fc-list): without these, a Fontconfig error in the cell.
    "/etc/fonts",
    "/var/cache/fontconfig",
)
_warned_unisolated = False


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
    package = str(Path(__file__).resolve().parents[1])  # the whole tdkit package
    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), package}
    return sorted(r for r in roots if not r.startswith("/usr/"))


@contextlib.contextmanager
def claim_uid() -> Iterator[int | None]:
    """A user id no other run of this machine holds, while the block runs; None unless root."""
    if os.geteuid() != 0:
        yield None
        return
    UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        fd = os.open(UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            kill_uid(uid)  # whatever an earlier, interrupted grader left running
            yield uid
        finally:
            kill_uid(uid)
            os.close(fd)
        return
    raise TdkitError(f"no free sandbox uid in {UID_BASE}..{UID_BASE + UID_COUNT - 1}")


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (from a child that becomes ``uid``: kill(-1) spares no one else)."""
    script = (
        "import os, signal\n"
        f"os.setgroups([]); os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})\n"
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\n"
    )
    subprocess.run(
        [sys.executable, "-S", "-c", script],
        env={},
        stdin=subprocess.DEVNULL,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def chown_tree(root: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), uid, uid)
    os.lchown(root, uid, uid)


def log_tail(sink: IO[bytes], size: int = 8000) -> str:
    """The last ``size`` bytes of a run's log, read back through the grader's own descriptor."""
    end = sink.seek(0, os.SEEK_END)
    sink.seek(max(0, end - size))
    return sink.read().decode("utf-8", errors="replace")


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


def _reachable_parents(paths: Sequence[str], skip: tuple[str, ...]) -> list[str]:
    """bwrap options making every parent of ``paths`` (but ``skip``) mode 0755 before they are bound:
    the parents bwrap creates on its own are 0700, and a dropped uid could not reach what is bound."""
    options = []
    for parent in sorted({str(a) for p in paths for a in Path(p).parents if str(a) not in skip}):
        options += ["--perms", "0755", "--dir", parent]
    return options


def bwrap_command(
    bwrap: str,
    argv: Sequence[str],
    scratch: Path,
    readonly: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    *,
    root: bool = False,
    info_fd: int | None = None,
) -> list[str]:
    """``root``: bwrap runs as real root, without a user namespace, keeping only the capabilities
    ``tdkit.untrusted.rlimits --drop`` needs to become the run's own uid (which drops them all).
    ``info_fd``: bwrap writes there the pid of the sandbox's first process (JSON ``child-pid``)."""
    if root:
        namespaces = [
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
        ]
    else:
        namespaces = ["--unshare-all"]
    command = [bwrap, *namespaces, "--die-with-parent", "--new-session", "--clearenv"]
    if info_fd is not None:
        command += ["--info-fd", str(info_fd)]
    system = [path for path in SYSTEM_PATHS if os.path.exists(path)]
    command += _reachable_parents(system, skip=("/",))  # /etc, /var/cache
    for path in system:
        command += ["--ro-bind", path, path]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            command += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    roots = [*_readonly_roots(), *map(str, readonly)]
    command += _reachable_parents([*roots, str(scratch)], skip=("/", "/tmp"))
    for path in roots:
        command += ["--ro-bind", path, path]
    command += ["--bind", str(scratch), str(scratch), "--chdir", str(scratch)]
    for key, value in (env or sandbox_env(scratch)).items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


def run_sandboxed(
    argv: Sequence[str],
    scratch: Path,
    limits: Limits,
    *,
    readonly: Sequence[Path] = (),
    isolate: bool = True,
) -> SandboxRun:
    """Run ``argv`` with ``scratch`` as its only writable directory; never raises for its faults."""
    bwrap = bwrap_path() if isolate else None
    if bwrap is None:  # the dropped user could not read a Python installed under /root: no uid
        return _run(argv, scratch, limits, readonly, None, None)
    with claim_uid() as uid:
        return _run(argv, scratch, limits, readonly, bwrap, uid)


def _run(
    argv: Sequence[str],
    scratch: Path,
    limits: Limits,
    readonly: Sequence[Path],
    bwrap: str | None,
    uid: int | None,
) -> SandboxRun:
    global _warned_unisolated
    if bwrap is None and not _warned_unisolated:
        print(
            "tdkit: bubblewrap (bwrap) not found: submissions run with resource limits only, without "
            "network and file isolation. Install it with 'apt-get install bubblewrap'.",
            file=sys.stderr,
        )
        _warned_unisolated = True
    env = sandbox_env(scratch)
    if uid is not None or bwrap is not None:
        env[KILL_ALL_ENV] = "1"  # its own uid, or its own pid namespace
    if uid is not None:
        chown_tree(scratch, uid)
        argv = [sys.executable, "-m", "tdkit.untrusted.rlimits", "--drop", str(uid), "--", *argv]
    command = (
        bwrap_command(bwrap, argv, scratch, readonly, env, root=uid is not None)
        if bwrap
        else list(argv)
    )
    limited = [
        sys.executable,
        "-m",
        "tdkit.untrusted.rlimits",
        str(limits.memory_mb),
        str(limits.cpu_seconds),
        str(limits.max_file_mb),
        str(limits.max_processes if uid is not None else 0),
        "--",
        *command,
    ]
    started = time.perf_counter()
    # The log is read back through this descriptor: the run may replace the file by a symlink.
    with tempfile.TemporaryFile(prefix="tdkit-sandbox-log-") as sink:
        process = subprocess.Popen(
            limited,
            cwd=scratch,
            env=env,
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
        if uid is not None:
            kill_uid(uid)
        output = log_tail(sink)
    return SandboxRun(
        returncode, timed_out, time.perf_counter() - started, output, bwrap is not None
    )
