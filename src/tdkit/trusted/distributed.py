"""Untrusted stages on a Dask distributed cluster (``tdkit grade --scheduler tls://HOST:PORT --tls DIR``).

Between machines the cluster speaks mutual TLS (``tls://``): every client, worker and the
scheduler hold a certificate signed by the course's CA (``tdkit certs``, :mod:`tdkit.trusted.certs`),
so nobody else can send code to the workers or read the notebooks on the way. Plain ``tcp://``
is for a cluster on this machine (loopback); to another host it works but warns.

Only :func:`tdkit.untrusted.job.execute_job` travels: a prepared notebook goes out, plain data
(``SandboxOutcome``) comes back. Preparing the jobs, the hidden checks and every gradebook
write stay in the calling process, exactly as in a local run, so the results are the same.

Workers need tdkit installed (the same code as the caller: checked on connecting) and, if the
grading profile names a local data directory, that directory at the same path.

A worker lost while running a job (killed, out of memory, machine gone) is the scheduler's
business: it runs the job again on another worker. A job whose workers die
``distributed.scheduler.allowed-failures + 1`` times errs with distributed's ``KilledWorker``;
started as docs/instructor.md says (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1``), that is
after two deaths. The job is then not run again: its future raises :class:`KilledWorker`,
which ``grade_all`` records as that student's failure, and the batch goes on. A lost
scheduler is no student's fault: :class:`ClusterLost` stops the batch instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.trusted.certs import MachineFiles

if TYPE_CHECKING:  # grade imports this module (through incremental): the type only
    from tdkit.trusted.grade import GradeRun

CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler, and to see a first worker
WANTED_ALLOWED_FAILURES = 1  # one retry after a lost worker, then the job is reported


class KilledWorker(Exception):
    """Every worker that ran this job died while running it: the job is not run again."""


class ClusterLost(BaseException):
    """The scheduler went away (or dropped the job) mid-batch: no student's fault.

    A BaseException, so that ``grade_all`` does not grade it as that student's failure (which
    would write zeros to the gradebook for every student still to come) but stops the batch.
    """


def code_digest() -> str:
    """A digest of tdkit's own source files: equal on two machines when they run the same code."""
    package = (
        Path(__file__).resolve().parents[1]
    )  # the whole tdkit package, not this stage's folder
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def worker_report(data_dirs: Sequence[str]) -> dict[str, Any]:
    """Runs on each worker: what the caller must know before sending it jobs."""
    import tdkit.untrusted.job  # noqa: F401 - imported now, in parallel, rather than by each worker's first job
    from tdkit.untrusted.sandbox import bwrap_path

    return {
        "code": code_digest(),
        "python": sys.version.split()[0],
        "missing": [d for d in data_dirs if not Path(d).is_dir()],
        "bwrap": bwrap_path() is not None,
    }


@dataclass
class Cluster:
    """What the caller saw of the cluster on connecting."""

    address: str
    workers: dict[str, dict[str, Any]]  # worker address -> worker_report()
    threads: int
    allowed_failures: int
    notes: list[str] = field(default_factory=list)

    @property
    def deaths(self) -> int:
        """How many worker deaths while running one job make it that student's failure."""
        return self.allowed_failures + 1

    def summary(self) -> list[str]:
        line = (
            f"Dask scheduler {self.address}: {len(self.workers)} worker(s), {self.threads} thread(s); "
            f"a submission whose worker dies {self.deaths} time(s) is reported, not run again"
        )
        return [line, *self.notes]


class DaskExecutor(Executor):
    """A ``concurrent.futures`` executor over a ``distributed.Client``, for ``grade_all(executor=...)``.

    ``submit`` returns a plain ``concurrent.futures.Future`` (what ``as_completed`` needs); the
    task's key names the student, so the dashboard shows who runs where.

    Jobs wait here, not on the workers: no more are handed to the scheduler than the cluster
    has threads. A worker's death counts against every task assigned to it, running or queued
    behind; so a job queued behind a submission that kills its worker would take the blame too.
    """

    def __init__(self, client: Any, cluster: Cluster) -> None:
        self.client = client
        self.cluster = cluster
        self._waiting: deque[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]
        ] = deque()
        self._tasks: dict[
            str, Any
        ] = {}  # key -> distributed.Future, held until done (else the task is dropped)
        self._running: list[Future[Any]] = []  # the futures of self._tasks
        self._lock = threading.Lock()
        self._shutdown = False
        self._lost: ClusterLost | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor after shutdown")
        future: Future[Any] = Future()
        with self._lock:
            self._waiting.append((future, fn, args, kwargs))
        self._dispatch()
        return future

    def _threads(self) -> int:
        try:
            return max(1, sum(cast("dict[str, int]", self.client.nthreads()).values()))
        except Exception:  # noqa: BLE001 - scheduler briefly unreachable: go on one at a time
            return 1

    def _dispatch(self) -> None:
        with self._lock:
            while self._waiting and not self._shutdown and len(self._tasks) < self._threads():
                future, fn, args, kwargs = self._waiting.popleft()
                if future.set_running_or_notify_cancel():
                    self._send(future, fn, args, kwargs)

    def _send(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        student = getattr(args[0], "student_id", None) if args else None
        key = f"tdkit-{student or getattr(fn, '__name__', 'job')}-{uuid.uuid4().hex[:8]}"
        if self._lost is not None or self.client.status not in (
            "running",
            "connecting",
            "newly-created",
        ):
            future.set_exception(
                self._lost or ClusterLost(f"the Dask client is {self.client.status}")
            )
            return
        try:
            task = self.client.submit(fn, *args, key=key, pure=False, **kwargs)
        except Exception as error:  # noqa: BLE001 - e.g. the job cannot be pickled: this student's failure
            future.set_exception(error)
            return
        self._tasks[key] = task
        self._running.append(future)
        task.add_done_callback(lambda done: self._finished(key, done, future))

    def _finished(self, key: str, done: Any, future: Future[Any]) -> None:
        from distributed import KilledWorker as DaskKilledWorker

        with self._lock:
            self._tasks.pop(key, None)
            self._running.remove(future)
        try:
            if done.status == "finished":
                future.set_result(done.result())
            elif done.status == "error":
                error = done.exception()
                if isinstance(error, DaskKilledWorker):
                    error = KilledWorker(
                        f"{self.cluster.deaths} workers Dask sont morts pendant cette exécution (le dernier : "
                        f"{getattr(error.last_worker, 'address', '?')}) ; elle n'est pas relancée."
                    )
                future.set_exception(error)
            else:  # cancelled, not by us: the scheduler connection was lost, or the cluster dropped it
                self._lost = self._lost or ClusterLost(
                    f"the Dask scheduler {self.cluster.address} dropped the run of {key} ({done.status})"
                )
                future.set_exception(self._lost)
        except Exception as error:  # noqa: BLE001 - e.g. the result could not be fetched: the future ends
            if self.client.status != "running":
                self._lost = self._lost or ClusterLost(
                    f"lost the Dask scheduler {self.cluster.address}"
                )
            if not future.done():
                future.set_exception(self._lost or error)
        self._dispatch()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Interrupted or failed: what is still queued is cancelled rather than waited for.
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel what is left if asked (or not waiting), and close the client; the cluster keeps running."""
        if self._shutdown:
            return
        if cancel_futures or not wait:
            with self._lock:
                self._shutdown = True
                waiting, self._waiting = list(self._waiting), deque()
                tasks = list(self._tasks.values())
            for future, *_ in waiting:
                future.cancel()
            if tasks:
                with suppress(Exception):  # the client may have lost its scheduler already
                    self.client.cancel(tasks)
        else:
            with self._lock:
                pending = [f for f, *_ in self._waiting] + self._running
            wait_futures(pending)
            self._shutdown = True
        self.client.close()


def _unreachable(address: str, error: BaseException) -> TdkitError:
    tls = (
        " Over tls://, this machine's certificate must be signed by the same course CA as the "
        "scheduler's ('tdkit certs DIR NAME', one CA for the whole cluster)."
        if address.startswith("tls://")
        else ""
    )
    return TdkitError(
        f"Cannot reach a Dask scheduler at {address} ({type(error).__name__}: {error}). Check the address "
        f"(tls://HOST:PORT, as 'dask scheduler' prints it), or start one on that machine with "
        f"'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES={WANTED_ALLOWED_FAILURES} dask scheduler' and "
        f"workers with 'dask worker {address} --nthreads 1'.{tls}"
    )


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is on this machine (unresolvable: no)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def security_for(address: str, tls: Path | None) -> tuple[Any, list[str]]:
    """The ``distributed.Security`` for ``address`` (None for plain TCP) and the warnings to show.

    ``tls://`` needs this machine's certificate folder (``tdkit certs``); ``tcp://`` is meant
    for loopback: anywhere else, whoever reaches the scheduler runs code on the workers.
    """
    scheme, _, rest = address.partition("://")
    host = rest.rsplit(":", 1)[0].strip("[]")
    if scheme == "tls":
        if tls is None:
            raise TdkitError(
                f"{address} is a TLS scheduler: give this machine's certificate folder with --tls DIR/NAME "
                "(made by 'tdkit certs DIR NAME' with the course CA; docs/instructor.md, 'Scaling out')."
            )
        files = MachineFiles(tls).check()
        from distributed.security import Security

        return Security(
            require_encryption=True,
            tls_ca_file=str(files.ca),
            tls_client_cert=str(files.cert),
            tls_client_key=str(files.key),
        ), []
    if scheme != "tcp" or not host:
        raise TdkitError(
            f"{address!r} is not a scheduler address: give it as tls://HOST:PORT (or tcp://127.0.0.1:PORT)."
        )
    if tls is not None:
        raise TdkitError(f"--tls is for a tls:// scheduler: give the address as tls://{rest}.")
    if is_loopback(host):
        return None, []
    warning = (
        f"WARNING: plain tcp:// to {host}: anyone who can reach this scheduler runs code on its workers and reads "
        "the submissions. Use tls:// with the course's certificates ('tdkit certs', docs/instructor.md, 'Scaling out')."
    )
    return None, [warning]


def connect(
    address: str,
    *,
    tls: Path | None = None,
    data_dirs: Iterable[str | Path] = (),
    timeout: float = CONNECT_TIMEOUT,
) -> DaskExecutor:
    """A client of the scheduler at ``address``, its workers checked; raises TdkitError naming the fix.

    ``tls``: this machine's certificate folder (``tdkit certs``), for a ``tls://`` address."""
    try:
        from distributed import Client
    except ImportError as error:
        raise TdkitError(
            "Grading on Dask needs the 'distributed' package: pip install 'tdkit[scale]' "
            "(or pip install 'dask[distributed]')."
        ) from error
    if "://" not in address:
        raise TdkitError(f"{address!r} is not a scheduler address: give it as tls://HOST:PORT.")
    security, warnings = security_for(address, tls)
    try:
        client = Client(address, timeout=timeout, set_as_default=False, security=security)
    except (OSError, TimeoutError, ValueError) as error:
        raise _unreachable(address, error) from error
    try:
        executor = DaskExecutor(
            client, _inspect(client, address, [str(d) for d in data_dirs], timeout)
        )
    except BaseException:
        client.close()
        raise
    executor.cluster.notes[:0] = warnings
    return executor


def _inspect(client: Any, address: str, data_dirs: list[str], timeout: float) -> Cluster:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as error:
        raise TdkitError(
            f"The Dask scheduler at {address} has no worker: start some with 'dask worker {address} "
            "--nthreads 1' on machines with tdkit installed."
        ) from error
    reports = client.run(worker_report, data_dirs, on_error="return")
    mine = code_digest()
    problems, notes = [], []
    for worker, report in sorted(reports.items()):
        if isinstance(report, BaseException):
            problems.append(
                f"{worker} cannot run tdkit ({type(report).__name__}: {report}): install it there"
            )
        elif report["code"] != mine:
            problems.append(
                f"{worker} runs other tdkit code than this machine: install the same version there"
            )
        elif report["missing"]:
            problems.append(
                f"{worker} lacks the grading data {', '.join(report['missing'])}: copy it to that path"
            )
        elif not report["bwrap"]:
            notes.append(
                f"{worker}: no bubblewrap, submissions run with resource limits only (apt-get install bubblewrap)"
            )
    if problems:
        raise TdkitError("Some Dask workers cannot grade:\n  " + "\n  ".join(problems))
    try:
        # A lambda travels by value: the scheduler machine needs no tdkit to answer.
        allowed = int(
            client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        )
    except Exception:  # noqa: BLE001 - a scheduler that refuses to run code: assume its default
        import dask

        allowed = int(dask.config.get("distributed.scheduler.allowed-failures"))
        notes.append(f"could not read the scheduler's allowed-failures; assuming {allowed}")
    if allowed != WANTED_ALLOWED_FAILURES:
        notes.append(
            f"the scheduler reports a job only after {allowed + 1} lost worker(s); start it with "
            f"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES={WANTED_ALLOWED_FAILURES} to report a submission "
            "that kills its worker twice"
        )
    threads = sum(info.get("nthreads", 0) for info in client.scheduler_info()["workers"].values())
    return Cluster(address, {w: r for w, r in reports.items()}, threads, allowed, notes)


def grade_on_cluster(
    course: Course,
    scheduler: str,
    tls: Path | None,
    *,
    student: str | None = None,
    everyone: bool = False,
    progress: Callable[[str], None] = print,
) -> GradeRun:
    """``tdkit grade --scheduler``: the untrusted runs on the cluster's workers, the rest here."""
    from tdkit.trusted.grade import grade_all

    profile = course.grading_profile()
    try:
        with connect(scheduler, tls=tls, data_dirs=profile.data_dirs) as executor:
            for line in executor.cluster.summary():
                progress(line)
            return grade_all(
                course,
                student=student,
                everyone=everyone,
                profile=profile,
                executor=executor,
                progress=progress,
            )
    except ClusterLost as error:
        raise TdkitError(
            f"Grading stopped: {error}. The students graded before it are in the gradebook; run the same "
            "command again once the scheduler and its workers are back (or grade here, without --scheduler)."
        ) from None
