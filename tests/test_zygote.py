"""Forked runs (``tdkit.untrusted.zygote``): each a fresh sandbox, its own uid, limits and seeds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from tdkit.core.config import Limits
from tdkit.untrusted import zygote
from tdkit.untrusted.job import SandboxJob, execute_job

needs_zygote = pytest.mark.skipif(
    not zygote.enabled(),
    reason="forked runs need root and bubblewrap (scripts/system-deps.sh), and TDKIT_ZYGOTE unset",
)

LIMITS = Limits(memory_mb=4096, cpu_seconds=300, max_file_mb=64, max_processes=128, run_timeout=120)

FORKS = """
import importlib, os, sys
from tdkit.untrusted.zygote import PRELOAD
for name in PRELOAD:
    importlib.import_module(name)
assert len(os.listdir("/proc/self/task")) > 1, "the preloaded modules started no thread: nothing to test"
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        import numpy, polars, torch
        frame = polars.DataFrame({"a": numpy.arange(1000) % 7, "b": numpy.ones(1000)})
        total = frame.group_by("a").agg(polars.col("b").sum())["b"].sum()
        model = torch.nn.Conv2d(3, 4, 3)
        model(torch.ones(2, 3, 8, 8)).sum().backward()
        os._exit(0 if total == 1000 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
print("FORKS-OK")
"""

REPORT = """
import json, os, resource, tempfile, numpy, torch
print("REPORT:" + json.dumps({
    "uid": os.getuid(), "pid": os.getpid(), "ppid_alive": os.path.exists(f"/proc/{os.getppid()}"),
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "limits": [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                                                    resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC)],
    "home": os.environ["HOME"], "cwd": os.getcwd(), "tmp": tempfile.gettempdir(),
    "env": sorted(os.environ), "draw": numpy.random.rand(3).tolist(),
    "threads": torch.get_num_threads(), "fds": sorted(os.listdir("/proc/self/fd")),
}))
"""


def test_forks_of_the_preloaded_modules_work() -> None:
    """Do torch, numpy and polars work in forks of a process that preloaded them (no lock held by its threads)?"""
    done = subprocess.run(
        [sys.executable, "-c", FORKS], capture_output=True, text=True, timeout=300, check=False
    )
    assert "FORKS-OK" in done.stdout, done.stderr[-3000:]


def _report(student: str) -> dict[str, object]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(REPORT)])
    outcome = execute_job(SandboxJob(student, nbformat.writes(nb), LIMITS))
    assert outcome.executed is not None, outcome.output
    for output in nbformat.reads(outcome.executed, as_version=4).cells[0].outputs:
        for line in str(output.get("text", "")).splitlines():
            if line.startswith("REPORT:"):
                return dict(json.loads(line[len("REPORT:") :]))
    raise AssertionError(outcome.output)


@needs_zygote
def test_each_forked_run_is_its_own_sandbox() -> None:
    """Does a forked kernel run as the run's uid, in its own pid namespace, with the limits, env and fresh seeds?"""
    first, second = _report("zygote-a"), _report("zygote-b")
    for report in (first, second):
        assert 61000 <= int(report["uid"]) < 62000  # type: ignore[call-overload]
        assert max(report["processes"]) < 50, report  # type: ignore[type-var]
        assert report["limits"] == [4096 * 1024 * 1024, 300, 64 * 1024 * 1024, 128]
        assert report["home"] == report["cwd"] == report["tmp"], report
        assert "TDKIT_SANDBOX" in report["env"] and "JPY_PARENT_PID" in report["env"]
        assert report["threads"] == 1
    assert first["cwd"] != second["cwd"]
    assert first["draw"] != second["draw"]  # numpy's global generator reseeded in each run


@needs_zygote
def test_wall_clock_limit_kills_a_forked_run() -> None:
    """Past run_timeout, is the forked run killed at once (its whole pid namespace), and reported?"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(600)")])
    limits = Limits(cell_timeout=600, run_timeout=3)
    outcome = execute_job(SandboxJob("zygote-slow", nbformat.writes(nb), limits))
    assert outcome.timed_out and outcome.returncode is None
    assert outcome.seconds < 60  # the zygote's start is not part of the run's clock


def _parent(pid: int) -> int:
    """The parent of ``pid``, from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if _parent(int(entry.name)) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _spawner_socket() -> Path:
    """The socket this process's zygotes come from, its spawner started if need be."""
    if zygote.socket_path() is None:
        zygote.warm()
    path = zygote.socket_path()
    assert path is not None
    return path


@needs_zygote
def test_a_dead_idle_zygote_is_replaced_never_reused() -> None:
    """Is an idle zygote that died replaced by a newly started one, the next run unaffected?"""
    _report("zygote-warm")  # an idle zygote in this process's pool, at least
    killed = zygote.idle_pids()
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while set(killed) & set(zygote.idle_pids()):  # gone once their sockets close: fully exited
        assert time.monotonic() < deadline, "SIGKILL did not stop the zygotes"
        time.sleep(0.01)
    started = zygote.started()
    report = _report("zygote-after")
    assert zygote.started() == started + 1
    assert 61000 <= int(report["uid"]) < 62000  # type: ignore[call-overload]
    assert not set(killed) & set(zygote.idle_pids())


@needs_zygote
def test_a_zygote_killed_mid_run_fails_that_run_only() -> None:
    """A zygote killed while a run is under way: does that run end as a failure (no exception in
    the grader), and does the next run get a new zygote and pass?"""
    _report("zygote-before-kill")  # an idle zygote in this process's pool
    victims = zygote.idle_pids()
    stopped: list[int] = []

    def kill_once_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in victims:
                if _children(pid):  # its fork for the run exists: the run is under way
                    os.kill(pid, signal.SIGKILL)
                    stopped.append(pid)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_once_running)
    killer.start()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(60)")])
    started = time.monotonic()
    outcome = execute_job(SandboxJob("zygote-killed", nbformat.writes(nb), LIMITS))
    killer.join()
    assert stopped, "the run never started in one of this process's zygotes"
    assert outcome.executed is None and not outcome.timed_out
    assert time.monotonic() - started < 50  # ended with its zygote, not by the 60 s sleep
    report = _report("zygote-after-kill")
    assert 61000 <= int(report["uid"]) < 62000  # type: ignore[call-overload]


@needs_zygote
def test_a_request_to_a_dead_zygote_gets_no_answer_not_an_exception() -> None:
    """A zygote that died before reading its request (the pool's race with a kill): is the run
    answered "no answer" (None), so that it fails alone, instead of raising in the grader?"""
    dead = zygote.Zygote(_spawner_socket())
    os.kill(dead.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while dead.alive:
        assert time.monotonic() < deadline, "SIGKILL did not stop the zygote"
        time.sleep(0.01)
    with open(os.devnull, "wb") as sink:
        assert dead.run({}, sink.fileno(), 5, lambda: None) is None
    assert not dead.alive


@needs_zygote
def test_every_zygote_is_a_fork_of_one_spawner_reachable_by_root_only() -> None:
    """Are two zygotes forks of the same spawner (the modules preloaded once), whose socket only
    its own user can reach?"""
    path = _spawner_socket()
    first, second = zygote.Zygote(path), zygote.Zygote(path)
    try:
        spawner = _parent(first.pid)
        assert first.pid != second.pid and _parent(second.pid) == spawner
        assert str(path).encode() in Path(f"/proc/{spawner}/cmdline").read_bytes()
        assert first.home == second.home == path.parent
    finally:
        first.close()
        second.close()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


PROBE_OTHER_PROCESS = """
import json, sys
from pathlib import Path
from tdkit.untrusted import zygote
zygote.warm()
pid = zygote.idle_pids()[0]
parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
print("SHARED:" + json.dumps({"spawner": zygote.spawner_pid(), "parent": parent}))
"""


@needs_zygote
def test_another_process_takes_its_zygotes_from_the_shared_spawner() -> None:
    """With TDKIT_ZYGOTE_SOCKET set, does another process (a `tdkit grade`) fork its zygotes from
    that spawner instead of starting one of its own?"""
    path = _spawner_socket()
    probe = zygote.Zygote(path)
    spawner = _parent(probe.pid)
    probe.close()
    done = subprocess.run(
        [sys.executable, "-c", PROBE_OTHER_PROCESS],
        env={**os.environ, zygote.SOCKET_ENV: str(path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next((li for li in done.stdout.splitlines() if li.startswith("SHARED:")), None)
    assert line is not None, done.stderr[-3000:]
    assert json.loads(line[len("SHARED:") :]) == {"spawner": None, "parent": spawner}


def test_a_spawner_of_another_interpreter_is_refused(tmp_path: Path) -> None:
    """A TDKIT_ZYGOTE_SOCKET whose spawner runs another interpreter or tdkit: is it refused, the
    message naming what it runs (the pool then starts its own spawner)?"""
    path = tmp_path / zygote.SOCKET_NAME
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        hello = {"pid": 1, "home": str(tmp_path), "executable": "/elsewhere/bin/python"}
        connection.sendall(json.dumps({**hello, "tdkit": "/elsewhere/tdkit"}).encode())
        connection.recv(16)
        connection.close()

    thread = threading.Thread(target=answer)
    thread.start()
    with pytest.raises(zygote.WrongSpawner, match="/elsewhere/bin/python"):
        zygote.Zygote(path)
    thread.join()
    server.close()
