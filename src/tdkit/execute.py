"""Run a notebook top to bottom in a real Jupyter kernel (nbclient) and report each failure."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
KERNEL_NAME = "python3"  # the kit's own kernel, whatever kernelspec a submission names
# One thread: batch-of-one training is 30x slower when threads of parallel runs fight for 2 cores.
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


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
) -> Execution:
    """Execute ``nb`` in place with ``cwd`` as working directory; never raises for the notebook's faults."""
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name=KERNEL_NAME,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    started = time.perf_counter()
    failure = None
    try:
        client.execute(env={**os.environ, **KERNEL_ENV, **(env or {})})
    except CellTimeoutError as error:
        failure = f"timeout: a cell ran longer than {cell_timeout} s ({strip_ansi(str(error)).splitlines()[0]})"
    except DeadKernelError as error:
        failure = f"dead kernel: {strip_ansi(str(error))}"
    except Exception as error:  # noqa: BLE001 - with allow_errors=False the first failing cell lands here
        if allow_errors:
            failure = f"{type(error).__name__}: {strip_ansi(str(error))[:2000]}"
    return Execution(nb, time.perf_counter() - started, cell_errors(nb), failure)
