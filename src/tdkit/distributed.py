"""Untrusted stages on a Dask distributed cluster (``tdkit grade --scheduler tcp://HOST:PORT``).

Only :func:`tdkit.untrusted.execute_job` travels: a prepared notebook goes out, plain data
(``SandboxOutcome``) comes back. Preparing the jobs, the hidden checks and every gradebook
write stay in the calling process, exactly as in a local run, so the results are the same.

Workers need tdkit installed (the same code as the caller: checked on connecting) and, if the
grading profile names a local data directory, that directory at the same path.

A worker lost while running a job (killed, out of memory, machine gone) is the scheduler's
business: it runs the job again on another worker. A job whose workers die
``distributed.scheduler.allowed-failures + 1`` times errs with distributed's ``KilledWorker``;
started as the README says (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1``), that is
after two deaths. The job is then not run again: its future raises :class:`KilledWorker`,
which ``grade_all`` records as that student's failure, and the batch goes on.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdkit.errors import TdkitError

CONNECT_TIMEOUT = 5.0  # seconds to reach the scheduler, and to see a first worker
WANTED_ALLOWED_FAILURES = 1  # one retry after a lost worker, then the job is reported


class KilledWorker(Exception):
    """Every worker that ran this job died while running it: the job is not run again."""


def code_digest() -> str:
    """A digest of tdkit's own source files: equal on two machines when they run the same code."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def worker_report(data_dirs: Sequence[str]) -> dict[str, Any]:
    """Runs on each worker: what the caller must know before sending it jobs."""
    from tdkit.sandbox import bwrap_path

    return {
        "code": code_digest(),
        "python": sys.version.split()[0],
        "missing": [d for d in data_dirs if not Path(d).is_dir()],
        "bwrap": bwrap_path() is not None,
    }


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


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
    """

    def __init__(self, client: Any, cluster: Cluster) -> None:
        self.client = client
        self.cluster = cluster
        self._tasks: dict[str, Any] = {}  # key -> distributed.Future: held until done, or the task is dropped
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        from distributed import KilledWorker as DaskKilledWorker

        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor after shutdown")
        student = getattr(args[0], "student_id", None) if args else None
        key = f"tdkit-{student or getattr(fn, '__name__', 'job')}-{uuid.uuid4().hex[:8]}"
        task = self.client.submit(fn, *args, key=key, pure=False, **kwargs)
        future: Future[Any] = Future()
        with self._lock:
            self._tasks[key] = task

        def forward(done: Any) -> None:
            with self._lock:
                self._tasks.pop(key, None)
            if future.done():
                return
            try:
                if done.status == "finished":
                    future.set_result(done.result())
                elif done.status == "cancelled":
                    future.cancel()
                    future.set_running_or_notify_cancel()
                else:
                    error = done.exception()
                    if isinstance(error, DaskKilledWorker):
                        error = KilledWorker(
                            f"{self.cluster.deaths} workers Dask sont morts pendant cette exécution (le dernier : "
                            f"{getattr(error.last_worker, 'address', '?')}) ; elle n'est pas relancée."
                        )
                    future.set_exception(error)
            except BaseException as error:  # noqa: BLE001 - whatever happens, the future ends
                if not future.done():
                    future.set_exception(error)

        def cancel_task(done: Future[Any]) -> None:
            if done.cancelled() and task.status not in ("finished", "error", "cancelled"):
                task.cancel()

        future.add_done_callback(cancel_task)
        task.add_done_callback(forward)
        return future

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Interrupted or failed: what is still queued is cancelled rather than waited for.
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel what is still queued and close the client (the cluster itself keeps running)."""
        if self._shutdown:
            return
        self._shutdown = True
        with self._lock:
            tasks = list(self._tasks.values())
        if tasks and (cancel_futures or not wait):
            self.client.cancel(tasks)
        elif tasks:
            from distributed import wait as dask_wait

            dask_wait(tasks)
        self.client.close()


def _unreachable(address: str, error: BaseException) -> TdkitError:
    return TdkitError(
        f"Cannot reach a Dask scheduler at {address} ({type(error).__name__}: {error}). Check the address "
        f"(tcp://HOST:PORT, as 'dask scheduler' prints it), or start one on that machine with "
        f"'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES={WANTED_ALLOWED_FAILURES} dask scheduler' and "
        f"workers with 'dask worker {address} --nthreads 1'."
    )


def connect(
    address: str, *, data_dirs: Iterable[str | Path] = (), timeout: float = CONNECT_TIMEOUT
) -> DaskExecutor:
    """A client of the scheduler at ``address``, its workers checked; raises TdkitError naming the fix."""
    try:
        from distributed import Client
    except ImportError as error:
        raise TdkitError(
            "Grading on Dask needs the 'distributed' package: pip install 'tdkit[scale]' "
            "(or pip install 'dask[distributed]')."
        ) from error
    if "://" not in address:
        raise TdkitError(f"{address!r} is not a scheduler address: give it as tcp://HOST:PORT.")
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise _unreachable(address, error) from error
    try:
        return DaskExecutor(client, _inspect(client, address, [str(d) for d in data_dirs], timeout))
    except BaseException:
        client.close()
        raise


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
            problems.append(f"{worker} cannot run tdkit ({type(report).__name__}: {report}): install it there")
        elif report["code"] != mine:
            problems.append(f"{worker} runs other tdkit code than this machine: install the same version there")
        elif report["missing"]:
            problems.append(f"{worker} lacks the grading data {', '.join(report['missing'])}: copy it to that path")
        elif not report["bwrap"]:
            notes.append(f"{worker}: no bubblewrap, submissions run with resource limits only (apt-get install bubblewrap)")
    if problems:
        raise TdkitError("Some Dask workers cannot grade:\n  " + "\n  ".join(problems))
    try:
        allowed = int(client.run_on_scheduler(_allowed_failures))
    except Exception:  # noqa: BLE001 - a scheduler that refuses to run code: assume its default
        import dask

        allowed = int(dask.config.get("distributed.scheduler.allowed-failures"))
        notes.append(f"could not read the scheduler's allowed-failures; assuming {allowed}")
    if allowed != WANTED_ALLOWED_FAILURES:
        notes.append(
            f"the scheduler retries a job after {allowed} lost worker(s); start it with "
            f"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES={WANTED_ALLOWED_FAILURES} to report a submission "
            "that kills its worker twice"
        )
    threads = sum(info.get("nthreads", 0) for info in client.scheduler_info()["workers"].values())
    return Cluster(address, {w: r for w, r in reports.items()}, threads, allowed, notes)
