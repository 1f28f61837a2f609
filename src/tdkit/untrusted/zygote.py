"""Runs forked from a zygote that has already imported the course's modules (``TDKIT_ZYGOTE=0``: off).

Starting Python, importing torch, datasets, matplotlib and ipykernel costs seconds of CPU per
run. A spawner, started with the sandbox's clean environment when the grader first needs a
zygote, imports them once; each zygote is a fork of it (milliseconds), one per grading worker,
served over its own connection to the spawner's socket. Neither holds anything of the grader's
(no course file, gradebook or secret: student code can read their memory) nor any student's
(runs are forks they never become); idle zygotes serve every later grading of the same process
and stop at its exit. ``TDKIT_ZYGOTE_SOCKET`` names a spawner that another process of the same
interpreter started (a test session, a grading server): its zygotes serve this process too. Per
run, bubblewrap still builds the whole sandbox (mounts, namespaces, scratch, private ``/tmp``)
around a placeholder process; the zygote forks a child that joins those namespaces with
``setns``, whose own child (inside the run's pid namespace) closes every inherited descriptor,
sets its limits, becomes the run's uid and runs the runner in-process. Its kernels are forks too
(``tdkit.untrusted.kernel_forker``). No process that ran student code is ever reused. Only when
the grader is root and bubblewrap is present; otherwise each run starts afresh
(``tdkit.untrusted.sandbox.run_sandboxed``).
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
import struct
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
SOCKET_ENV = "TDKIT_ZYGOTE_SOCKET"  # another process's spawner, of this same interpreter and tdkit
SOCKET_NAME = "spawner.sock"
TDKIT_DIR = str(Path(__file__).resolve().parents[1])  # the tdkit a spawner and its peers must share
# What a graded kernel imports on first use: the first optimizer torch._dynamo (2-3 s of CPU),
# load_dataset scipy.io for its patches, ipykernel psutil, the hidden-test cells pytest.
LAZY_IMPORTS = ("torch._dynamo", "scipy.io", "psutil", "pytest")
# The runner's own modules and the lazy ones above, besides what each assignment names
# (``Assignment.preload``: its environment's heavy modules); one not installed is not preloaded.
# ipykernel first: tqdm.auto (imported by datasets) picks its notebook bars only when it is loaded.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "numpy",
    "torch",
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
PRELOAD_GRACE = 300  # seconds for a new spawner to preload before its first zygote says hello
_libc = ctypes.CDLL(None, use_errno=True)


def enabled() -> bool:
    """Forked runs: on unless ``TDKIT_ZYGOTE=0``, where the grader is root and bubblewrap present."""
    return os.environ.get(ZYGOTE_ENV, "1") != "0" and os.geteuid() == 0 and bwrap_path() is not None


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


# --- the zygote process -------------------------------------------------------------------------


def _preload(names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _hello() -> bytes:
    """What a zygote says first: who it is, and which interpreter and tdkit it runs."""
    return json.dumps(
        {
            "pid": os.getpid(),
            "home": os.environ.get("HOME", ""),
            "executable": sys.executable,
            "tdkit": TDKIT_DIR,
        }
    ).encode()


def spawn(control: int, path: str, preload: Sequence[str] = ()) -> None:
    """The spawner: listen on ``path``, say so on ``control``, preload, then fork one zygote per
    connection (those made while it preloads wait) until its starter closes ``control``; it waits
    for every zygote before exiting."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    starter = socket.socket(fileno=control)
    starter.sendall(b"listening")
    _preload([*PRELOAD[:2], *preload, *PRELOAD[2:]])
    # A zygote's death wakes the loop up, so that it is reaped at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    zygotes: set[int] = set()
    waited: list[Any] = [starter, listener, wake_r]
    while True:
        readable = select.select(waited, [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
        _reap(zygotes)
        if starter in readable:
            break  # the starter closed its end (or died): no new zygote
        if listener in readable:
            connection, _ = listener.accept()
            uid = struct.unpack(
                "3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            )[1]
            if uid != os.getuid():  # the socket is the spawner's uid's only; never serve another
                connection.close()
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in (wake_r, wake_w):
                    os.close(fd)
                starter.close()
                listener.close()
                serve(connection)
                os._exit(0)
            zygotes.add(pid)
            connection.close()
    listener.close()
    for pid in zygotes:
        os.waitpid(pid, 0)


def _reap(zygotes: set[int]) -> None:
    for pid in list(zygotes):
        if os.waitpid(pid, os.WNOHANG)[0]:
            zygotes.discard(pid)


def serve(channel: socket.socket) -> None:
    """A zygote: say hello, then one forked run per request until the grader closes the socket."""
    channel.sendall(_hello())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 1)
        except ConnectionResetError:  # its grader was killed
            return
        if not message:
            return
        request = json.loads(message)
        # What this run's assignment imports and the spawner did not preload: once per zygote.
        _preload([name for name in request.get("preload", []) if name not in sys.modules])
        pid = os.fork()
        if pid == 0:
            _join_and_run(request, fds[0], channel)
        for received in fds:
            os.close(received)
        _, status = os.waitpid(pid, 0)
        try:
            channel.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
        except (BrokenPipeError, ConnectionResetError):  # its grader is gone (killed): so is it
            return


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


class Spawner:
    """The spawner process this grader started, and its socket's path."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tdkit-zygote-"))  # 0700: the socket is ours only
        self.path = self.home / SOCKET_NAME
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tdkit.untrusted.zygote",
                str(theirs.fileno()),
                str(self.path),
                *preload,
            ],
            env=sandbox_env(self.home),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.control = ours
        if self.control.recv(16) != b"listening":
            self.close()
            raise RuntimeError(
                "tdkit: the grading zygotes' spawner did not start (see its error above)"
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the spawner once every zygote it forked has stopped: their CPU then counts as ours."""
        self.control.close()
        try:
            self.process.wait(timeout=REPLY_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


class WrongSpawner(RuntimeError):
    """The spawner at the socket runs another interpreter or another tdkit than this process."""


class Zygote:
    """One zygote, forked by the spawner at ``path`` for this connection; serves one run at a time."""

    def __init__(self, path: Path) -> None:
        self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.channel.connect(str(path))
            if not select.select([self.channel], [], [], PRELOAD_GRACE)[0]:
                raise RuntimeError(f"tdkit: the zygote spawner at {path} did not answer")
            message = self.channel.recv(1 << 16)
            if not message:
                raise RuntimeError(f"tdkit: the zygote spawner at {path} closed the connection")
            hello = json.loads(message)
        except BaseException:
            self.channel.close()
            raise
        self.pid, self.home = int(hello["pid"]), Path(hello["home"])
        ours = {"executable": sys.executable, "tdkit": TDKIT_DIR}
        if {key: hello.get(key) for key in ours} != ours:
            self.close()
            raise WrongSpawner(
                f"the zygote spawner at {path} runs {hello.get('executable')} with the tdkit of "
                f"{hello.get('tdkit')}, not this process's {ours['executable']} and {ours['tdkit']}"
            )

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
        """Idle, a zygote says nothing: its socket is readable only once it has exited."""
        if self.channel.fileno() < 0:
            return False
        return not select.select([self.channel], [], [], 0)[0]

    def close(self) -> None:
        """Stop the zygote (its spawner waits for it)."""
        self.channel.close()


class _Pool:
    """Idle zygotes, for the whole process: every grading in it reuses them.

    A zygote depends on nothing at start (its environment is ``sandbox_env``'s, the course's
    environment comes with each run) and holds nothing of the grader's nor any student's.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[Zygote] = []
        self.spawner: Spawner | None = None
        self.started = 0

    def acquire(self, preload: Sequence[str] = ()) -> Zygote:
        dead = []
        with self.lock:
            while self.idle and not self.idle[-1].alive:
                dead.append(self.idle.pop())
            found = self.idle.pop() if self.idle else None
        for zygote in dead:  # a dead zygote is replaced, never reused
            zygote.close()
        return found if found is not None else self.start(preload)

    def start(self, preload: Sequence[str] = ()) -> Zygote:
        shared = os.environ.get(SOCKET_ENV)
        zygote = None
        if shared:
            try:
                zygote = Zygote(Path(shared))
            except (OSError, RuntimeError) as error:
                print(
                    f"tdkit: {SOCKET_ENV}={shared} cannot serve this process ({error}); "
                    f"starting its own zygotes (unset {SOCKET_ENV} to silence this)",
                    file=sys.stderr,
                )
        if zygote is None:
            with self.lock:
                if self.spawner is None or not self.spawner.alive:
                    self.spawner = Spawner(preload)
                path = self.spawner.path
            zygote = Zygote(path)
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
            spawner, self.spawner = self.spawner, None
        for zygote in idle:
            zygote.close()
        if spawner is not None:
            spawner.close()


_pool = _Pool()
atexit.register(_pool.close)


def warm(preload: Sequence[str] = ()) -> None:
    """Start a zygote now (and the spawner, if need be, preloading ``preload``), so that the next
    run does not pay it."""
    _pool.release(_pool.start(preload))


def close_all() -> None:
    """Stop every idle zygote and this process's spawner; the next run starts them again."""
    _pool.close()


def socket_path() -> Path | None:
    """Where this process's zygotes come from: ``TDKIT_ZYGOTE_SOCKET``, or its own spawner's socket."""
    shared = os.environ.get(SOCKET_ENV)
    if shared:
        return Path(shared)
    with _pool.lock:
        return _pool.spawner.path if _pool.spawner is not None else None


def spawner_pid() -> int | None:
    """The spawner this process started, if running (the grading benchmark reads its CPU time)."""
    with _pool.lock:
        return _pool.spawner.process.pid if _pool.spawner is not None else None


def idle_pids() -> list[int]:
    """This process's idle zygotes that are alive."""
    with _pool.lock:
        return [z.pid for z in _pool.idle if z.alive]


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
    preload: Sequence[str] = (),
) -> SandboxRun:
    """The runner on ``scratch``, forked from a zygote into a fresh bubblewrap sandbox as its own
    uid; the zygote has imported ``preload`` (the assignment's modules) before."""
    zygote = _pool.acquire(preload)  # before the run's clock: a zygote's start is not the run's
    try:
        return _run_forked(zygote, scratch, limits, readonly, preload)
    finally:
        _pool.release(zygote)


def _run_forked(
    zygote: Zygote,
    scratch: Path,
    limits: Limits,
    readonly: Sequence[Path],
    preload: Sequence[str],
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
                    "preload": list(preload),
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
    spawn(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
    os._exit(0)  # tearing the preloaded modules down costs seconds of CPU and frees nothing
