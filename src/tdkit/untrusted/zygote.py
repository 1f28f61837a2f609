"""Runs forked from a zygote that has already imported the course's modules (``TDKIT_ZYGOTE=0``: off).

Starting Python, importing torch, datasets, matplotlib and ipykernel costs seconds of CPU per
run. A zygote, started with the sandbox's clean environment when a grading worker first needs
one, imports them once and holds nothing of the grader's (no course file, gradebook or secret:
student code can read its memory) nor any student's (runs are forks it never becomes); idle
zygotes serve every later grading of the same process and stop at its exit. Per run, bubblewrap still builds the whole sandbox (mounts, namespaces,
scratch, private ``/tmp``) around a placeholder process; the zygote forks a child that joins
those namespaces with ``setns``, whose own child (inside the run's pid namespace) closes every
inherited descriptor, sets its limits, becomes the run's uid and runs the runner in-process.
Its kernels are forks too (``tdkit.untrusted.kernel_forker``). No process that ran student
code is ever reused. Only when the grader is root and bubblewrap is present; otherwise each run
starts afresh (``tdkit.untrusted.sandbox.run_sandboxed``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdkit.core.config import KILL_ALL_ENV, MB, Limits
from tdkit.untrusted import kernel_forker, rlimits
from tdkit.untrusted.sandbox import (
    SandboxRun,
    bwrap_command,
    bwrap_path,
    chown_tree,
    claim_uid,
    kill_uid,
    log_tail,
    sandbox_env,
)

ZYGOTE_ENV = "TDKIT_ZYGOTE"
# What a graded kernel imports on first use: the first optimizer torch._dynamo (2-3 s of CPU),
# load_dataset scipy.io for its patches, ipykernel psutil, the hidden-test cells pytest.
LAZY_IMPORTS = ("torch._dynamo", "scipy.io", "psutil", "pytest")
# The course environment's heavy modules, the runner's own and the lazy ones above; one not installed is not preloaded.
# ipykernel first: tqdm.auto (imported by datasets) picks its notebook bars only when it is loaded.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "numpy",
    "torch",
    "torch.nn.functional",
    "datasets",
    "polars",
    "PIL.Image",
    "matplotlib.pyplot",
    "nbclient",
    "nbformat",
    "tdkit.untrusted.runner",
    "tdkit.untrusted.probe",
    *LAZY_IMPORTS,
)
# The sandbox's first process: says it runs (bwrap execs it once every mount is in place, while
# --info-fd speaks before), then only holds the namespaces open until the run ends.
# (Python, not sh: dash cannot name a descriptor above 9.)
PLACEHOLDER = "import os, signal; os.write({fd}, b'ready'); os.close({fd}); signal.pause()"
NAMESPACES = (
    "ipc",
    "uts",
    "net",
    "cgroup",
    "pid",
    "mnt",
)  # mnt last: /proc is the host's until then
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
REPLY_GRACE = 30  # seconds for the zygote to report a run whose sandbox was killed
_libc = ctypes.CDLL(None, use_errno=True)


def enabled() -> bool:
    """Forked runs: on unless ``TDKIT_ZYGOTE=0``, where the grader is root and bubblewrap present."""
    return os.environ.get(ZYGOTE_ENV, "1") != "0" and os.geteuid() == 0 and bwrap_path() is not None


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


# --- the zygote process -------------------------------------------------------------------------


def serve(fd: int) -> None:
    """Preload, say ready, then one forked run per request until the grader closes the socket."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    channel = socket.socket(fileno=fd)
    channel.sendall(b"ready")
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 1)
        if not message:
            return
        pid = os.fork()
        if pid == 0:
            _join_and_run(json.loads(message), fds[0], channel)
        for received in fds:
            os.close(received)
        _, status = os.waitpid(pid, 0)
        channel.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())


def _join_and_run(request: dict[str, Any], sink: int, channel: socket.socket) -> None:
    """The zygote's child: joins the run's namespaces, forks the run into its pid namespace, waits."""
    code = 70
    try:
        channel.close()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _join(int(request["ns_pid"]))
        pid = os.fork()
        if pid == 0:
            _run(request, sink)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    except BaseException:  # noqa: BLE001 - reported in the run's log, whatever it is
        os.write(sink, traceback.format_exc().encode())
    finally:
        os._exit(code)


def _join(ns_pid: int) -> None:
    """setns() into every namespace of ``ns_pid`` that differs from ours (opened before any join)."""
    targets = []
    for kind in NAMESPACES:
        path = f"/proc/{ns_pid}/ns/{kind}"
        if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino:
            targets.append((kind, os.open(path, os.O_RDONLY)))
    for kind, fd in targets:
        if _libc.setns(fd, 0) != 0:
            raise OSError(ctypes.get_errno(), f"setns {kind}")
        os.close(fd)


def _run(request: dict[str, Any], sink: int) -> None:
    """The run's process, inside its sandbox: clean descriptors, limits, its uid, then the runner."""
    code = 1
    try:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        uid = int(request["uid"])
        # Where the zygote's preloaded libraries keep their caches: the sandbox's own /tmp.
        home = request["zygote_home"]
        os.makedirs(home, exist_ok=True)
        os.chown(home, uid, uid)
        rlimits.apply(*request["limits"])
        rlimits.drop_to(uid)
        _prctl(PR_SET_DUMPABLE, 1)  # as after an exec: the run's own /proc files are its uid's
        scratch = Path(request["scratch"])
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # chosen again, as the run's uid: the zygote's choice was root's
        kernel_forker.reseed()
        kernel_forker.start()
        from tdkit.untrusted import runner

        runner.run(scratch, int(request["cell_timeout"]), int(request["max_output_bytes"]))
        kernel_forker.stop()
        code = 0
    except BaseException:  # noqa: BLE001 - the runner's own traceback, as `python -m` would print it
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


# --- the grader's side --------------------------------------------------------------------------


class Zygote:
    """One zygote process and its socket; serves one run at a time."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tdkit-zygote-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tdkit.untrusted.zygote", str(theirs.fileno())],
            env=sandbox_env(self.home),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.channel = ours
        if self.channel.recv(16) != b"ready":
            self.close()
            raise RuntimeError("tdkit: the grading zygote did not start (see its error above)")

    def run(self, request: dict[str, Any], sink: int, timeout: float, stop: Any) -> int | None:
        """The run's exit status; ``stop()`` is called past ``timeout``. None: no answer at all."""
        try:
            socket.send_fds(self.channel, [json.dumps(request).encode()], [sink])
            if not select.select([self.channel], [], [], timeout)[0]:
                stop()
                if not select.select([self.channel], [], [], REPLY_GRACE)[0]:
                    self.close()
                    return None
            reply = self.channel.recv(1 << 16)
        except (BrokenPipeError, ConnectionResetError):  # the zygote died (killed, out of memory)
            reply = b""
        if not reply:
            self.close()
            return None
        return int(json.loads(reply)["returncode"])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the zygote and wait for it: the CPU time of every run it forked then counts as ours."""
        self.channel.close()
        try:
            self.process.wait(timeout=REPLY_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


class _Pool:
    """Idle zygotes, for the whole process: every grading in it reuses them.

    A zygote depends on nothing at start (its environment is ``sandbox_env``'s, the course's
    environment comes with each run) and holds nothing of the grader's nor any student's.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[Zygote] = []
        self.started = 0

    def acquire(self) -> Zygote:
        dead = []
        with self.lock:
            while self.idle and not self.idle[-1].alive:
                dead.append(self.idle.pop())
            found = self.idle.pop() if self.idle else None
        for zygote in dead:  # a dead zygote is replaced, never reused
            zygote.close()
        return found if found is not None else self.start()

    def start(self) -> Zygote:
        zygote = Zygote()
        with self.lock:
            self.started += 1
        return zygote

    def release(self, zygote: Zygote) -> None:
        if not zygote.alive:
            zygote.close()
            return
        with self.lock:
            self.idle.append(zygote)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for zygote in idle:
            zygote.close()


_pool = _Pool()
atexit.register(_pool.close)


def warm() -> None:
    """Start a zygote now, so that the next run does not pay its start."""
    _pool.release(_pool.start())


def close_all() -> None:
    """Stop every idle zygote; the next run starts a new one (at exit, it happens by itself)."""
    _pool.close()


def idle_processes() -> list[subprocess.Popen[bytes]]:
    """The idle zygotes' processes (the grading benchmark reads their CPU time)."""
    with _pool.lock:
        return [z.process for z in _pool.idle]


def started() -> int:
    """How many zygotes this process has started: gradings in one process share them."""
    return _pool.started


def _child_pid(info: int, ready: int) -> int:
    """The sandbox's pid, once its placeholder runs: joining earlier could see a half-built mount view."""
    data = b""
    while b"}" not in data:
        if not select.select([info], [], [], REPLY_GRACE)[0]:
            raise RuntimeError("tdkit: bubblewrap did not report its sandbox")
        chunk = os.read(info, 4096)
        if not chunk:
            raise RuntimeError(f"tdkit: bubblewrap did not start: {data!r}")
        data += chunk
    if not select.select([ready], [], [], REPLY_GRACE)[0] or not os.read(ready, 16):
        raise RuntimeError("tdkit: bubblewrap did not finish building the sandbox")
    return int(json.loads(data)["child-pid"])


def run_forked(
    scratch: Path,
    limits: Limits,
    *,
    readonly: Sequence[Path] = (),
) -> SandboxRun:
    """The runner on ``scratch``, forked from a zygote into a fresh bubblewrap sandbox as its own uid."""
    zygote = _pool.acquire()  # before the run's clock: a zygote's start is not the run's
    try:
        return _run_forked(zygote, scratch, limits, readonly)
    finally:
        _pool.release(zygote)


def _run_forked(
    zygote: Zygote, scratch: Path, limits: Limits, readonly: Sequence[Path]
) -> SandboxRun:
    bwrap = bwrap_path()
    assert bwrap is not None, "run_forked needs bubblewrap (see enabled())"
    started = time.perf_counter()
    with claim_uid() as uid, tempfile.TemporaryFile(prefix="tdkit-sandbox-log-") as sink:
        assert uid is not None, "run_forked needs root (see enabled())"
        chown_tree(scratch, uid)
        env = {**sandbox_env(scratch), KILL_ALL_ENV: "1"}
        info_r, info_w = os.pipe()
        ready_r, ready_w = os.pipe()
        placeholder = (sys.executable, "-S", "-c", PLACEHOLDER.format(fd=ready_w))
        command = bwrap_command(
            bwrap, placeholder, scratch, readonly, env, root=True, info_fd=info_w
        )
        sandbox = subprocess.Popen(
            command,
            env={},
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            pass_fds=(info_w, ready_w),
            start_new_session=True,
        )
        os.close(info_w)
        os.close(ready_w)
        returncode: int | None = None
        timed_out = False
        try:
            ns_pid = _child_pid(info_r, ready_r)

            def stop() -> None:
                nonlocal timed_out
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ns_pid, signal.SIGKILL)  # the pid namespace's init: all of the run dies

            returncode = zygote.run(
                {
                    "ns_pid": ns_pid,
                    "uid": uid,
                    "scratch": str(scratch),
                    "env": env,
                    "zygote_home": str(zygote.home),
                    "limits": [
                        limits.memory_mb,
                        limits.cpu_seconds,
                        limits.max_file_mb,
                        limits.max_processes,
                    ],
                    "cell_timeout": limits.cell_timeout,
                    "max_output_bytes": limits.max_output_mb * MB,
                },
                sink.fileno(),
                limits.run_timeout,
                stop,
            )
        finally:
            os.close(info_r)
            os.close(ready_r)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sandbox.pid, signal.SIGKILL)
            sandbox.wait()
            kill_uid(uid)
        output = log_tail(sink)
    return SandboxRun(
        None if timed_out else returncode, timed_out, time.perf_counter() - started, output, True
    )


if __name__ == "__main__":
    serve(int(sys.argv[1]))
    os._exit(0)  # tearing the preloaded modules down costs seconds of CPU and frees nothing
