"""Run a notebook top to bottom in a real Jupyter kernel (nbclient) and report each failure."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode

from tdkit.core.config import ENVIRONMENT_ENV, MB, Limits
from tdkit.untrusted import kernel_forker
from tdkit.untrusted.import_guard import KERNEL_ARGUMENTS

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
KERNEL_NAME = "python3"  # the kit's own kernel, whatever kernelspec a submission names
# One thread: batch-of-one training is 30x slower when threads of parallel runs fight for 2 cores.
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
DEFAULT_MAX_OUTPUT_BYTES = Limits.max_output_mb * MB
SHUTDOWN = "immediate"
TRUNCATED_NOTE = (
    "[tdkit] Sortie tronquée : ce notebook a produit plus de {mb:g} Mo de sorties ; la suite n'est pas "
    "conservée (le code a continué de s'exécuter).\n"
)


def _message_bytes(msg: dict[str, Any]) -> int:
    """About how many bytes an output message would add to the notebook."""
    content = msg.get("content", {})
    size = len(str(content.get("text", ""))) + len(str(content.get("evalue", "")))
    size += sum(len(str(line)) for line in content.get("traceback", []) or [])
    data = content.get("data", {})
    if isinstance(data, dict):
        size += sum(len(str(value)) for value in data.values())
    return size


def _coerce_mime_data(msg: dict[str, Any]) -> None:
    """Non-JSON MIME types must hold text in a notebook: anything else (an unknown type sent raw)
    becomes its JSON text, so the executed notebook stays valid."""
    data = msg.get("content", {}).get("data")
    if not isinstance(data, dict):
        return
    for mime, value in list(data.items()):
        if not isinstance(mime, str) or (
            not mime.endswith("json") and not isinstance(value, (str, list))
        ):
            try:
                data[str(mime)] = json.dumps(value)
            except (TypeError, ValueError):
                data[str(mime)] = repr(value)


class BoundedClient(NotebookClient):
    """nbclient, keeping at most ``max_output_bytes`` of outputs for the whole notebook.

    Past the budget each output is dropped as it arrives (one note per cell says so), so a
    submission that prints 100 MB or displays a 50 MB image cannot exhaust the runner's memory
    nor make the executed notebook huge.
    """

    def __init__(
        self,
        nb: NotebookNode,
        km: KernelManager | None = None,
        *,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        **kwargs: Any,  # nbclient's traitlets, passed through as given
    ) -> None:
        super().__init__(nb, km, **kwargs)
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        self.truncated_cells: set[int] = set()

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[no-untyped-def]
        _coerce_mime_data(msg)
        size = _message_bytes(msg)
        if self.output_bytes + size <= self.max_output_bytes:
            self.output_bytes += size
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in self.truncated_cells:
            self.truncated_cells.add(cell_index)
            note = TRUNCATED_NOTE.format(mb=self.max_output_bytes / (1024 * 1024))
            outs.append(NotebookNode(output_type="stream", name="stderr", text=note))
        return None


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def cell_seconds(cell: NotebookNode) -> float:
    """How long an executed code cell ran, from nbclient's timing metadata (0 when absent)."""
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
        return 0.0
    start = dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


@dataclass(frozen=True)
class CellError:
    index: int
    cell_id: str
    ename: str
    evalue: str
    traceback: str


@dataclass
class Execution:
    notebook: NotebookNode
    seconds: float
    errors: list[CellError] = field(default_factory=list)
    failure: str | None = None  # the run itself stopped: timeout, dead kernel
    truncated: bool = False  # outputs past the budget were dropped

    @property
    def ok(self) -> bool:
        return not self.errors and self.failure is None


def cell_errors(nb: NotebookNode) -> list[CellError]:
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                found.append(
                    CellError(
                        index,
                        str(cell.get("id", index)),
                        str(output.get("ename", "")),
                        strip_ansi(str(output.get("evalue", ""))),
                        strip_ansi("\n".join(output.get("traceback", []))),
                    )
                )
    return found


def execute_notebook(
    nb: NotebookNode,
    cwd: str | Path,
    *,
    cell_timeout: int = 600,
    allow_errors: bool = True,
    env: Mapping[str, str] | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    shutdown: str = SHUTDOWN,
    environment: str | None = None,
) -> Execution:
    """Execute ``nb`` in place with ``cwd`` as working directory; never raises for the notebook's faults.

    ``environment`` (``CourseEnvironment.kernel_json()``): the kernel holds the notebook's imports to
    it (``tdkit.untrusted.import_guard``); None lets it import whatever is installed.
    """
    guard = {ENVIRONMENT_ENV: environment} if environment is not None else {}
    client = BoundedClient(
        nb,
        max_output_bytes=max_output_bytes,
        timeout=cell_timeout,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=kernel_forker.manager_class(),
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
        # The outputs are in once the last cell replies: killing the kernel saves the ~1 s a
        # graceful shutdown waits (bench/grading.py measures it), and runs none of its exit hooks.
        shutdown_kernel=shutdown,
        extra_arguments=list(KERNEL_ARGUMENTS) if environment is not None else [],
    )
    started = time.perf_counter()
    failure = None
    try:
        client.execute(env={**os.environ, **KERNEL_ENV, **(env or {}), **guard})
    except CellTimeoutError as error:
        failure = (
            f"Temps dépassé : une cellule a tourné plus de {cell_timeout} s (boucle infinie ? attente ?) "
            f"et a été arrêtée. ({strip_ansi(str(error)).splitlines()[0][:300]})"
        )
    except DeadKernelError as error:
        failure = (
            "Le noyau Python s'est arrêté pendant une cellule (os._exit, plantage, mémoire ou processus "
            f"épuisés ?). ({strip_ansi(str(error))[:300]})"
        )
    except Exception as error:  # noqa: BLE001 - with allow_errors=False the first failing cell lands here
        if allow_errors:
            failure = f"{type(error).__name__}: {strip_ansi(str(error))[:2000]}"
    return Execution(
        nb, time.perf_counter() - started, cell_errors(nb), failure, bool(client.truncated_cells)
    )
