"""The untrusted stage, run inside the sandbox: ``python -m tdkit.runner SCRATCH``.

Executes ``SCRATCH/submission.ipynb`` (already sanitised, parameters injected, probe cell
appended) in a Jupyter kernel, and writes ``executed.ipynb``, ``run.json`` and the probe's
``artifacts/``. When the run stops early (timeout, dead kernel), a second kernel runs only
the cells that define the API, then the probe, so every function is still tried.
It imports neither ``reference`` nor ``grader_tests``.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import asdict
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from tdkit.execute import Execution, execute_notebook

SUBMISSION = "submission.ipynb"
EXECUTED = "executed.ipynb"
RUN_RECORD = "run.json"
ARTIFACTS = "artifacts"
PROBE_TAG = "tdkit-probe"


def probe_cell() -> NotebookNode:
    cell = nbformat.v4.new_code_cell(
        "from tdkit.probe import run_probe as _tdkit_run_probe\n"
        f"_tdkit_run_probe(globals(), {ARTIFACTS!r})",
        metadata={"tags": [PROBE_TAG]},
    )
    cell.id = PROBE_TAG
    return cell


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
    copy = nbformat.v4.new_notebook(metadata=nb.metadata)
    copy.cells = [nbformat.from_dict(dict(c)) for c in keep]
    for cell in copy.cells:
        cell.outputs, cell.execution_count = [], None
    return copy


def run(scratch: Path, cell_timeout: int) -> dict[str, object]:
    nb = nbformat.read(scratch / SUBMISSION, as_version=4)
    execution = execute_notebook(nb, scratch, cell_timeout=cell_timeout)
    nbformat.write(execution.notebook, scratch / EXECUTED)
    record: dict[str, object] = _record(execution)
    if execution.failure is not None:
        recovery = execute_notebook(definitions_only(nb), scratch, cell_timeout=cell_timeout)
        record["recovery"] = _record(recovery)
    (scratch / RUN_RECORD).write_text(json.dumps(record, ensure_ascii=False))
    return record


def _record(execution: Execution) -> dict[str, object]:
    return {
        "seconds": execution.seconds,
        "failure": execution.failure,
        "errors": [asdict(e) for e in execution.errors],
    }


def main() -> None:
    scratch = Path(sys.argv[1]).resolve()
    cell_timeout = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    run(scratch, cell_timeout)


if __name__ == "__main__":
    main()
