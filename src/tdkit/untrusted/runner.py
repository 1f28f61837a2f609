"""The untrusted stage, run inside the sandbox: ``python -m tdkit.untrusted.runner SCRATCH``.

Executes ``SCRATCH/submission.ipynb`` (already sanitised, parameters injected, probe cell
appended) in a Jupyter kernel, and writes ``executed.ipynb``, ``run.json`` and the probe's
``artifacts/``. When the run stops early (timeout, dead kernel, too many processes) or the
probe refuses to run (the notebook replaced the tools it relies on), a second kernel runs only
the cells that define the API, then the probe, so every function is still tried. The probe
writes into a folder with a random name, moved to ``artifacts/`` at the end in place of
whatever the notebook wrote there. Both kernels hold the notebook's imports to the course
environment of ``environment.json`` (``tdkit.untrusted.import_guard``), read before any student code runs.
It imports neither ``reference`` nor the checks: only the assignment's probe, from the
read-only folder ``probe.json`` names.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import cast

import nbformat
from nbformat.notebooknode import NotebookNode

from tdkit.core.config import KILL_ALL_ENV
from tdkit.untrusted import kernel_forker
from tdkit.untrusted.execute import DEFAULT_MAX_OUTPUT_BYTES, Execution, execute_notebook
from tdkit.untrusted.import_guard import notebook_outputs, recorded_modules
from tdkit.untrusted.probe_cell import ARTIFACTS, PROBE_TAG, probe_refusal, with_probe_into

SUBMISSION = "submission.ipynb"
EXECUTED = "executed.ipynb"
RUN_RECORD = "run.json"
ENVIRONMENT = "environment.json"  # written by the grader: CourseEnvironment.kernel_json()
PROBE = "probe.json"  # written by the grader: where the assignment's probe is, and its name


def _fresh_out_dir() -> str:
    """A folder name the notebook cannot know in advance: files it wrote before are never read."""
    return f".probe-{secrets.token_hex(16)}"


def _publish(scratch: Path, out_dir: str) -> None:
    """Move the probe's folder to ``artifacts/``, replacing whatever the notebook put there."""
    target = scratch / ARTIFACTS
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target, ignore_errors=True)
    source = scratch / out_dir
    if source.is_dir() and not source.is_symlink():
        source.rename(target)


def _kill_leftovers() -> None:
    """Kill every process of the run but this one (stray children of a dead or stopped kernel).

    Only when the sandbox says everything this process can signal belongs to the run (its own
    uid, or its own pid namespace).
    """
    if kernel_forker.active():
        kernel_forker.kill_others()  # the recovery kernel comes from the same forker
    elif os.environ.get(KILL_ALL_ENV) == "1":
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _only_imports(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def definitions_only(nb: NotebookNode) -> NotebookNode:
    """The cells that define the API (imports, locked given code, solution cells) and the probe."""
    keep = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        tags = cell.get("metadata", {}).get("tags", [])
        given = meta.get("locked") and not meta.get("grade")
        if PROBE_TAG in tags or meta.get("solution") or given or _only_imports(cell.source):
            keep.append(cell)
    copy = cast(NotebookNode, nbformat.v4.new_notebook(metadata=nb.metadata))
    copy.cells = [nbformat.from_dict(dict(c)) for c in keep]
    for cell in copy.cells:
        cell.outputs, cell.execution_count = [], None
    return copy


MAX_RUN_PROCESSES = 48  # processes (not threads) of one run before the watchdog stops it
TOO_MANY_PROCESSES = "Trop de processus : le notebook en a lancé plus de {n} (fork en boucle ?) ; ils ont tous été arrêtés."


class Watchdog:
    """Under the sandbox (own pid namespace), kills the whole run as soon as it holds more than
    ``limit`` processes: a fork bomb would otherwise take both CPU cores from the other students'
    runs until its cell timed out. The runner itself survives and reports it."""

    def __init__(self, limit: int = MAX_RUN_PROCESSES) -> None:
        self.limit = limit
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:  # noqa: PYI034
        if os.environ.get(KILL_ALL_ENV) == "1" and os.path.isdir("/proc"):
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            try:
                count = sum(1 for name in os.listdir("/proc") if name.isdigit())
            except OSError:
                continue
            if count > self.limit:
                self.fired = True
                _kill_leftovers()


def run(
    scratch: Path, cell_timeout: int, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
) -> dict[str, object]:
    nb = nbformat.read(scratch / SUBMISSION, as_version=4)
    declared = scratch / ENVIRONMENT
    environment = declared.read_text(encoding="utf-8") if declared.is_file() else None
    # Read before any student code runs, as the environment is.
    probe = json.loads((scratch / PROBE).read_text(encoding="utf-8"))
    root, assignment = str(probe["root"]), str(probe["assignment"])
    out_dir = _fresh_out_dir()
    with Watchdog() as watchdog:
        execution = execute_notebook(
            with_probe_into(nb, out_dir, root, assignment),
            scratch,
            cell_timeout=cell_timeout,
            max_output_bytes=max_output_bytes,
            environment=environment,
        )
    nbformat.write(execution.notebook, scratch / EXECUTED)
    record: dict[str, object] = _record(execution)
    outputs = notebook_outputs(execution.notebook)
    if watchdog.fired:
        record["failure"] = TOO_MANY_PROCESSES.format(n=watchdog.limit)
    refusal = probe_refusal(execution.notebook)
    if refusal is not None:
        record["failure"] = refusal
    # A stopped run, or a probe refused (tools replaced): the API is probed again in a fresh
    # kernel that runs only the cells defining it.
    if execution.failure is not None or refusal is not None:
        _kill_leftovers()
        shutil.rmtree(scratch / out_dir, ignore_errors=True)
        out_dir = _fresh_out_dir()
        with Watchdog():
            recovery = execute_notebook(
                with_probe_into(definitions_only(nb), out_dir, root, assignment),
                scratch,
                cell_timeout=cell_timeout,
                max_output_bytes=max_output_bytes,
                environment=environment,
            )
        record["recovery"] = _record(recovery)
        outputs += notebook_outputs(recovery.notebook)
        again = probe_refusal(recovery.notebook)
        if again is not None:
            record["failure"] = again
    record["missing_modules"] = recorded_modules(outputs)
    _kill_leftovers()
    _publish(scratch, out_dir)
    (scratch / RUN_RECORD).write_text(json.dumps(record, ensure_ascii=False))
    return record


def _record(execution: Execution) -> dict[str, object]:
    return {
        "seconds": execution.seconds,
        "failure": execution.failure,
        "errors": [asdict(e) for e in execution.errors],
        "truncated": execution.truncated,
    }


def main() -> None:
    scratch = Path(sys.argv[1]).resolve()
    cell_timeout = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    max_output_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_MAX_OUTPUT_BYTES
    run(scratch, cell_timeout, max_output_bytes)


if __name__ == "__main__":
    main()
