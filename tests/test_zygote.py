"""Forked runs (``tdkit.untrusted.zygote``): each a fresh sandbox, its own uid, limits and seeds."""

from __future__ import annotations

import json
import os
import signal
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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _our_zygotes() -> list[int]:
    """This process's zygotes: its children running ``tdkit.untrusted.zygote``."""
    found = []
    for pid in _children(os.getpid()):
        try:
            if b"tdkit.untrusted.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _dead(pid: int) -> bool:
    """Exited as ``Popen.poll`` sees it: waitable (not reaped here), or already reaped.

    /proc says "Z" as soon as the main thread exits; a threaded process is waitable only once
    every thread has.
    """
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@needs_zygote
def test_a_dead_idle_zygote_is_replaced_never_reused() -> None:
    """Is an idle zygote that died replaced by a newly started one, the next run unaffected?"""
    _report("zygote-warm")  # an idle zygote in this process's pool, at least
    killed = _our_zygotes()
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not all(_dead(pid) for pid in killed):
        assert time.monotonic() < deadline, "SIGKILL did not stop the zygotes"
        time.sleep(0.01)
    started = zygote.started()
    report = _report("zygote-after")
    assert zygote.started() == started + 1
    assert 61000 <= int(report["uid"]) < 62000  # type: ignore[call-overload]
    assert not set(killed) & set(_our_zygotes())


@needs_zygote
def test_a_zygote_killed_mid_run_fails_that_run_only() -> None:
    """A zygote killed while a run is under way: does that run end as a failure (no exception in
    the grader), and does the next run get a new zygote and pass?"""
    _report("zygote-before-kill")  # an idle zygote in this process's pool
    victims = _our_zygotes()
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
    dead = zygote.Zygote()
    os.kill(dead.process.pid, signal.SIGKILL)
    dead.process.wait()
    with open(os.devnull, "wb") as sink:
        assert dead.run({}, sink.fileno(), 5, lambda: None) is None
    assert not dead.alive
