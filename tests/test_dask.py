"""Grading on a real Dask cluster: a scheduler and two workers on loopback, started with the `dask` CLI
over mutual TLS, as docs/instructor.md says (certificates from `tdkit certs`).

The same submissions are graded locally (``workers=2``) and through the cluster; the results
must be the same. Two test-only job hooks stand for what can happen to a worker: one job
kills its worker the first time it runs (a worker lost mid-task: it must be run again
elsewhere and graded as usual), another kills every worker that runs it (it must be reported
as that student's failure after two deaths, and the batch must still finish). An unreachable
scheduler fails fast with the fix; a scheduler lost mid-batch stops it. Every process is torn
down, whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import REPO, copy_course

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.release.generate import release
from tdkit.trusted.certs import MachineFiles, make_certificates
from tdkit.trusted.grade import GradeRun, grade_all
from tdkit.untrusted.job import SandboxJob, execute_job

pytest.importorskip(
    "distributed", reason="dask[distributed] is not installed (pip install 'tdkit[scale]')"
)

from tdkit.trusted.distributed import Cluster, ClusterLost, DaskExecutor, connect, security_for

DASK = Path(sys.executable).with_name("dask")
EXAMPLES = REPO / "examples" / "td_cnn" / "submissions"
SUBMISSIONS = {"alice": "alice_solution", "ines": "ines_crash_midway"}
KILLER = "zoe"  # her job kills every worker that runs it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, even if it is killed outright (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class LocalCluster:
    address: str
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path
    grader: MachineFiles  # the grading machine's certificate folder

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The process and everything it started (its own session): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            return


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not DASK.is_file():
        pytest.skip(f"no dask command beside {sys.executable}")
    logs = tmp_path_factory.mktemp("dask-logs")
    certs = tmp_path_factory.mktemp("dask-tls")
    tdkit = Path(sys.executable).with_name("tdkit")
    subprocess.run(
        [str(tdkit), "certs", str(certs), "scheduler", "worker1", "worker2", "grader"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = _free_port()
    address = f"tls://127.0.0.1:{port}"

    def tls(name: str) -> list[str]:
        files = MachineFiles(certs / name)
        return [
            "--tls-ca-file",
            str(files.ca),
            "--tls-cert",
            str(files.cert),
            "--tls-key",
            str(files.key),
        ]

    env = {
        **os.environ,
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",  # as docs/instructor.md says
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    commands = {
        "scheduler": [
            str(DASK),
            "scheduler",
            "--protocol",
            "tls",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
            *tls("scheduler"),
        ],
        **{
            f"worker{i}": [
                str(DASK),
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"worker{i}",
                "--memory-limit",
                "0",
                "--local-directory",
                str(logs / f"w{i}"),
                "--preload",
                "tdkit.untrusted.job",
                *tls(f"worker{i}"),
            ]  # as docs/instructor.md says
            for i in (1, 2)
        },
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes[name] = subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - the child only calls prctl
                )
        yield LocalCluster(address, processes, logs, MachineFiles(certs / "grader"))
    finally:
        for name in reversed(list(processes)):
            _stop(processes[name])


class HookedExecutor(Executor):
    """Test-only: sends the real job, or one that kills its worker process for the chosen students."""

    def __init__(
        self, inner: DaskExecutor, runs_log: Path, kill_once: set[str], kill_always: set[str]
    ) -> None:
        self.inner = inner
        self.runs_log = str(
            runs_log
        )  # one line per job started on a worker: student, pid, killed or ran
        self.kill_once = kill_once  # the first run of these students' jobs kills its worker
        self.kill_always = kill_always

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        job: SandboxJob = args[0]
        student, runs_log = job.student_id, self.runs_log
        once, always = student in self.kill_once, student in self.kill_always

        # A closure: cloudpickle sends it by value, the workers need nothing but tdkit.
        def job_or_kill(job: SandboxJob) -> Any:
            with open(runs_log, "a+") as log:
                fcntl.flock(log, fcntl.LOCK_EX)
                log.seek(0)
                kill = always or (once and f"{student} " not in log.read())
                log.write(f"{student} {os.getpid()} {'killed' if kill else 'ran'}\n")
            if kill:
                time.sleep(1)  # a moment of work first, as a real run would have
                os.kill(os.getpid(), signal.SIGKILL)  # the worker process itself
            return execute_job(job)

        return self.inner.submit(job_or_kill, *args, **kwargs)


def _submit(course: Course, student: str, notebook: Path) -> None:
    target = course.submitted_notebook(student)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.read(notebook, as_version=4), target)


@dataclass
class Runs:
    course: Course
    local: GradeRun
    dask: GradeRun
    progress: list[str]
    runs_log: Path
    summary: list[str]


@pytest.fixture(scope="module")
def runs(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    course = Course(copy_course(tmp_path_factory.mktemp("dask-course")))
    release(course, verify=False)
    for student, example in SUBMISSIONS.items():
        _submit(course, student, EXAMPLES / f"{example}.ipynb")
    local = grade_all(course, workers=2, progress=lambda line: None)
    _submit(course, KILLER, EXAMPLES / "chloe_unanswered.ipynb")
    runs_log = tmp_path_factory.mktemp("dask-hooks") / "runs.log"
    progress: list[str] = []
    try:
        with connect(cluster.address, tls=cluster.grader.folder, timeout=60) as executor:
            executor.client.wait_for_workers(2, timeout=60)
            hooked = HookedExecutor(executor, runs_log, kill_once={"alice"}, kill_always={KILLER})
            dask = grade_all(course, everyone=True, executor=hooked, progress=progress.append)
            summary = executor.cluster.summary()
    except BaseException:
        print(cluster.log_tails())
        raise
    print(f"\nlocal, workers=2: {len(local.graded)} submissions in {local.seconds:.1f} s")
    print(
        f"dask, 2 workers x 1 thread: {len(dask.graded)} submissions (3 worker deaths) in {dask.seconds:.1f} s"
    )
    print("\n".join(summary + progress))
    print(runs_log.read_text())
    return Runs(course, local, dask, progress, runs_log, summary)


def test_dask_results_are_the_local_results(runs: Runs) -> None:
    """Is every submission graded on the cluster, over mutual TLS, exactly as locally (checks, scores, errors)?"""
    for student in SUBMISSIONS:
        here, there = runs.local.results.students[student], runs.dask.results.students[student]
        assert there.checks == here.checks, student
        assert there.score == here.score and there.failure == here.failure, student
        assert [e.ename for e in there.errors] == [e.ename for e in here.errors], student
        assert there.figures == here.figures, student
    assert (
        runs.dask.results.students["alice"].score == runs.dask.results.students["alice"].max_score
    )
    assert runs.dask.results.students["ines"].errors[0].ename == "NameError"


def _runs(runs: Runs, student: str) -> list[tuple[int, str]]:
    lines = [line.split() for line in runs.runs_log.read_text().splitlines()]
    return [(int(pid), what) for who, pid, what in lines if who == student]


def test_worker_lost_mid_task_is_run_again(runs: Runs) -> None:
    """Did alice's first run kill its worker, and was she then graded in full on another?"""
    alice = _runs(runs, "alice")
    assert [what for _, what in alice] == ["killed", "ran"], alice
    assert alice[0][0] != alice[1][0]
    result = runs.dask.results.students["alice"]
    assert result.failure is None and result.score == result.max_score


def test_job_killing_its_worker_twice_is_reported(runs: Runs) -> None:
    """Is a job that kills every worker it runs on reported after two deaths, while the batch finishes?"""
    assert "dies 2 time(s)" in runs.summary[0], runs.summary
    killed = _runs(runs, KILLER)
    assert [what for _, what in killed] == ["killed", "killed"] and killed[0][0] != killed[1][0], (
        killed
    )
    zoe = runs.dask.results.students[KILLER]
    assert (
        zoe.failure is not None
        and "KilledWorker" in zoe.failure
        and "2 workers Dask" in zoe.failure
    )
    assert zoe.score == 0
    assert set(runs.dask.graded) == {*SUBMISSIONS, KILLER}
    assert len([line for line in runs.progress if line.startswith("[")]) == len(SUBMISSIONS) + 1
    grades = (runs.course.reports / "grades.csv").read_text(encoding="utf-8")
    assert all(f"\n{student}," in grades for student in (*SUBMISSIONS, KILLER))


def test_unreachable_scheduler_names_the_fix(runs: Runs) -> None:
    """Does `tdkit grade --scheduler` with nobody listening fail fast, saying what to start and check?"""
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    with pytest.raises(TdkitError, match="dask scheduler") as caught:
        connect(address, timeout=2)
    assert "Check the address" in str(caught.value)
    assert time.perf_counter() - started < 15
    tdkit = Path(sys.executable).with_name("tdkit")
    done = subprocess.run(
        [str(tdkit), "grade", "--scheduler", address],
        cwd=runs.course.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Cannot reach a Dask scheduler at {address}" in done.stderr
    assert "Traceback" not in done.stderr


def test_lost_scheduler_stops_the_batch(tmp_path: Path) -> None:
    """Does a scheduler dying mid-batch stop it (ClusterLost), rather than grade everyone left as a failure?"""
    from distributed import Client

    assert not issubclass(
        ClusterLost, Exception
    )  # grade_all turns an Exception into a student's failure
    port = _free_port()
    with open(tmp_path / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the child only calls prctl
        )
    try:
        deadline = time.monotonic() + 60
        while (
            True
        ):  # a short timeout: the client also waits that long for a lost scheduler to come back
            try:
                client = Client(f"tcp://127.0.0.1:{port}", timeout=3, set_as_default=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
        executor = DaskExecutor(client, Cluster(f"tcp://127.0.0.1:{port}", {}, 0, 1))
        sent, waiting = (
            executor.submit(time.sleep, 60),
            executor.submit(time.sleep, 60),
        )  # no worker: both wait
        os.killpg(scheduler.pid, signal.SIGKILL)
        for future in (sent, waiting):
            with pytest.raises(ClusterLost):
                future.result(timeout=30)
        executor.shutdown(cancel_futures=True)
    finally:
        _stop(scheduler)


def _refuses_a_client_without_certificate(address: str, ca: Path) -> bool:
    """A TLS client that trusts the scheduler but shows no certificate (Dask's own client will not
    even try): does the scheduler end the connection?"""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # Dask checks the CA, not host names
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"\0" * 8)
                return (
                    tls.recv(1) == b""
                )  # TLS 1.3: the missing certificate is reported on first read
        except (ssl.SSLError, ConnectionError):
            return True


def test_client_without_the_course_certificate_is_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Does the TLS scheduler refuse plain TCP, a client showing no certificate, and one whose
    certificate another CA signed (while it still serves the course's own)?"""
    from distributed import Client
    from distributed.security import Security

    stranger = make_certificates(tmp_path / "other-course", ["intruder"]).machines[0]
    attempts = {
        "plain tcp": (cluster.address.replace("tls://", "tcp://"), None),
        "another CA": (
            cluster.address,
            Security(
                require_encryption=True,
                tls_ca_file=str(cluster.grader.ca),
                tls_client_cert=str(stranger.cert),
                tls_client_key=str(stranger.key),
            ),
        ),
    }
    for what, (address, security) in attempts.items():
        with pytest.raises((OSError, TimeoutError)):
            client = Client(address, security=security, timeout=3, set_as_default=False)
            client.close()
            pytest.fail(f"{what}: the scheduler accepted the client")
    assert _refuses_a_client_without_certificate(cluster.address, cluster.grader.ca)
    with pytest.raises(TdkitError, match="same course CA"):
        connect(cluster.address, tls=stranger.folder, timeout=3)
    with pytest.raises(TdkitError, match="--tls DIR/NAME"):
        connect(cluster.address, timeout=3)
    with connect(
        cluster.address, tls=cluster.grader.folder, timeout=300
    ) as executor:  # workers import torch first
        assert (
            executor.cluster.notes == []
            and executor.client.submit(sum, [1, 2]).result(timeout=60) == 3
        )


def test_plain_tcp_is_for_loopback(tmp_path: Path) -> None:
    """Is plain tcp:// accepted silently on loopback only, with a warning to any other host, and
    does tls:// name the certificate folder it needs?"""
    assert security_for("tcp://127.0.0.1:8786", None) == (None, [])
    assert security_for("tcp://localhost:8786", None) == (None, [])
    security, warnings = security_for(
        "tcp://192.0.2.10:8786", None
    )  # TEST-NET-1: never this machine
    assert (
        security is None
        and len(warnings) == 1
        and "tls://" in warnings[0]
        and "tdkit certs" in warnings[0]
    )
    with pytest.raises(TdkitError, match="tdkit certs"):
        security_for("tls://192.0.2.10:8786", tmp_path / "nothing")
    with pytest.raises(TdkitError, match="tls://192.0.2.10:8786"):
        security_for("tcp://192.0.2.10:8786", tmp_path)
