"""Kernels forked inside the run's sandbox, instead of started as fresh Python processes.

Under the zygote (``tdkit.untrusted.zygote``) the runner's process already holds the course's
modules (torch, numpy, datasets, ipykernel...). Before any thread or event loop starts,
:func:`start` forks a small forker that never runs student code; each kernel nbclient asks for is
a fork of it, so it starts with those modules imported, at no cost. The recovery kernel comes
from the same forker. :class:`ForkedKernelManager` is the jupyter_client side: a
``KernelManager`` whose provisioner asks the forker instead of spawning ``ipykernel_launcher``.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import sys
import threading
import uuid
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

LAUNCHER = ("-m", "ipykernel_launcher")  # the native kernelspec's command, after the interpreter


class _Forker:
    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self.requests = requests
        self.replies = os.fdopen(replies, "rb")
        self.lock = threading.Lock()

    def fork_kernel(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        message = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode() + b"\n"
        with self.lock:
            os.write(self.requests, message)
            line = self.replies.readline()
        if not line:
            raise RuntimeError("tdkit: the kernel forker of this run has stopped")
        return int(line)


_forker: _Forker | None = None


def active() -> bool:
    return _forker is not None


def start() -> None:
    """Fork the forker; call before this process starts any thread or event loop."""
    global _forker
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(requests_w)
        os.close(replies_r)
        code = 1
        try:
            _serve(requests_r, replies_w)
            code = 0
        finally:
            os._exit(code)
    os.close(requests_r)
    os.close(replies_w)
    _forker = _Forker(pid, requests_w, replies_r)


def stop() -> None:
    """Close the forker and wait for it (its kernels' CPU time then counts as this process's)."""
    global _forker
    if _forker is not None:
        os.close(_forker.requests)
        _forker.replies.close()
        os.waitpid(_forker.pid, 0)
        _forker = None


def _serve(requests: int, replies: int) -> None:
    """Fork a kernel per request line; reap each as it ends, and all of them at end of input."""
    kernels: dict[int, int] = {}  # pidfd -> pid
    pending = b""
    while True:
        ready = select.select([requests, *kernels], [], [])[0]
        for fd in ready:
            if fd in kernels:
                os.waitpid(kernels.pop(fd), 0)
                os.close(fd)
        if requests not in ready:
            continue
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            pid = os.fork()
            if pid == 0:
                _kernel(json.loads(line), (requests, replies, *kernels))
            kernels[os.pidfd_open(pid)] = pid
            os.write(replies, f"{pid}\n".encode())
    for fd, pid in kernels.items():
        os.waitpid(pid, 0)
        os.close(fd)


def kill_others() -> None:
    """SIGKILL every process of the run but this one and the forker (the run's own pid namespace).

    Repeated until only zombies and processes out of reach (the sandbox's root-owned init) remain,
    so that a process forking while the list is read is killed on a later round.
    """
    spared = {os.getpid(), _forker.pid if _forker is not None else 0}
    for _ in range(1000):
        signalled = False
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in spared or _zombie(name):
                continue
            try:
                os.kill(int(name), signal.SIGKILL)
                signalled = True
            except (ProcessLookupError, PermissionError):
                continue
        if not signalled:
            return


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _kernel(request: dict[str, Any], forker_fds: tuple[int, ...]) -> None:
    """The kernel process: what ``python -m ipykernel_launcher ARGV`` would be, never returning."""
    code: int | str | None = 1
    try:
        for fd in forker_fds:
            os.close(fd)
        os.setsid()  # as jupyter_client's launcher: the kernel's process group gets the signals
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        reseed()
        from ipykernel import kernelapp

        # Read by the kernel's traits when ipykernel was imported (in the zygote): given here.
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        sys.argv = [kernelapp.__file__, *argv]
        kernelapp.IPKernelApp.launch_instance(argv=argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        atexit._run_exitfuncs()
        os._exit(code if isinstance(code, int) else 1)


def reseed() -> None:
    """Fresh seeds where a fork would share the parent's (Python's ``random`` reseeds itself)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


class ForkedProcess:
    """The part of ``subprocess.Popen`` jupyter_client uses, for a kernel that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.pidfd_open(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._fd], [], [], 0)[0]:
            self.returncode = -signal.SIGKILL  # not our child: only its end is known
            os.close(self._fd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            select.select([self._fd], [], [], timeout)
        code = self.poll()
        if code is None:
            raise TimeoutError(f"kernel {self.pid} still running")
        return code

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._fd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkedProvisioner(LocalProvisioner):
    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if _forker is None or tuple(cmd[1:3]) != LAUNCHER:
            raise RuntimeError(f"tdkit: cannot fork this kernel command: {cmd[:3]}")
        # As jupyter_client's launcher, naming the kernel's parent: it stops if the forker dies.
        env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(_forker.pid)}
        pid = _forker.fork_kernel(cmd[3:], env, str(kwargs.get("cwd") or os.getcwd()))
        self.process = ForkedProcess(pid)  # type: ignore[assignment]  # Popen's interface, as used
        self.pid = self.pgid = pid
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class ForkedKernelManager(AsyncKernelManager):
    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self.provisioner is None:
            self.provisioner = ForkedProvisioner(
                kernel_id=self.kernel_id or "", kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)


def manager_class() -> type[AsyncKernelManager]:
    """The kernel manager for this process: forked kernels once :func:`start` ran."""
    return ForkedKernelManager if _forker is not None else AsyncKernelManager
