"""The untrusted stage as one self-contained job: notebook in, plain files out.

``execute_job`` needs nothing of the course (no gradebook, no hidden checks, no reference):
only tdkit installed. It runs in a grader thread, or on a Dask worker of another machine,
and its inputs and outputs are plain data that travel between machines.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdkit.core.config import MB, Limits
from tdkit.untrusted import runner, zygote
from tdkit.untrusted.execute import CellError
from tdkit.untrusted.import_guard import module_names
from tdkit.untrusted.probe_cell import ARTIFACTS
from tdkit.untrusted.sandbox import run_sandboxed

MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # all artifacts of one run: far above what the probe writes


@dataclass(frozen=True)
class SandboxJob:
    student_id: str
    notebook: str  # the prepared notebook (nbformat JSON)
    limits: Limits
    data_dirs: tuple[str, ...] = ()  # local data the run reads, bound read-only
    environment: str | None = (
        None  # the course environment the kernel holds imports to (kernel_json)
    )
    assignment: str = ""  # its probe is the package grader_tests.<assignment> of probe_files
    groups: tuple[str, ...] = ()  # the check groups whose artifacts are brought back
    # The assignment's probe and the files it imports (tdkit.core.assignment.probe_files): path -> text.
    probe_files: tuple[tuple[str, str], ...] = ()
    preload: tuple[str, ...] = ()  # modules the assignment's kernels import (zygote preload)


@dataclass
class RunRecord:
    """``run.json`` as the runner wrote it, validated here once: the run is untrusted, so is every field."""

    written: bool = False  # the runner got as far as writing something
    failure: str | None = None  # why the run stopped early (French, for the student)
    errors: list[CellError] = field(default_factory=list)  # the cells that raised
    truncated: bool = False  # outputs beyond the limit were dropped
    missing_modules: list[str] = field(
        default_factory=list
    )  # imports outside the course environment
    refused: bool = (
        False  # set by the trusted side (refused before any run), never read from the file
    )

    @classmethod
    def parse(cls, raw: bytes | None) -> RunRecord:
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data:
            return cls()
        failure = data.get("failure")
        return cls(
            written=True,
            failure=failure if isinstance(failure, str) else None,
            errors=_cell_errors(data.get("errors")),
            truncated=data.get("truncated") is True,
            missing_modules=module_names(data.get("missing_modules")),
        )


def _cell_errors(entries: object) -> list[CellError]:
    errors = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            # Any: the names come from the run's JSON; CellError's constructor refuses unknown or missing ones
            fields: dict[str, Any] = {
                k: (int(v) if k == "index" else str(v)[:20000]) for k, v in entry.items()
            }
            errors.append(CellError(**fields))
        except (TypeError, ValueError, AttributeError):
            continue
    return errors


@dataclass
class SandboxOutcome:
    student_id: str
    seconds: float
    timed_out: bool
    returncode: int | None
    output: str  # tail of the run's own output, for the instructor
    record: RunRecord  # run.json as the runner wrote it, validated
    executed: str | None  # executed notebook JSON (untrusted: only its outputs are used)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    prepared: str | None = None  # the job's prepared notebook (trusted): sources and metadata


def _read_bounded(path: Path, limit: int, dir_fd: int | None = None) -> bytes | None:
    """A regular file's bytes, if it is one and small enough.

    Opened with ``O_NOFOLLOW`` (relative to ``dir_fd`` when given): the run could have made it,
    or its folder, a symlink to any file of the grader's machine.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(limit + 1)
        return data if len(data) <= limit else None
    finally:
        os.close(fd)


def collect_artifacts(directory: Path, groups: tuple[str, ...]) -> dict[str, bytes]:
    """Only the files the probe writes, each a regular file, within the size budget."""
    found: dict[str, bytes] = {}
    try:
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return found
    budget = MAX_ARTIFACT_BYTES
    try:
        for group in groups:
            for name in (f"{group}.json", f"{group}.npz"):
                data = _read_bounded(Path(name), budget, dir_fd=folder)
                if data is not None:
                    found[name] = data
                    budget -= len(data)
    finally:
        os.close(folder)
    return found


def write_probe(files: tuple[tuple[str, str], ...]) -> Path:
    """The assignment's probe files in a folder of their own, bound read-only in the sandbox:
    the notebook cannot change the probe that judges it. World-readable: the sandbox reads
    them as a user of its own."""
    root = Path(tempfile.mkdtemp(prefix="tdkit-probe-"))
    for name, text in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def execute_job(job: SandboxJob) -> SandboxOutcome:
    scratch = Path(tempfile.mkdtemp(prefix=f"tdkit-{job.student_id}-"))
    probe = write_probe(job.probe_files)
    try:
        (scratch / runner.SUBMISSION).write_text(job.notebook, encoding="utf-8")
        if job.environment is not None:
            (scratch / runner.ENVIRONMENT).write_text(job.environment, encoding="utf-8")
        (scratch / runner.PROBE).write_text(
            json.dumps({"root": str(probe), "assignment": job.assignment}), encoding="utf-8"
        )
        readonly = [Path(d) for d in job.data_dirs] + [probe]
        run = (
            zygote.run_forked(scratch, job.limits, readonly=readonly, preload=job.preload)
            if zygote.enabled()
            else run_sandboxed(
                [
                    sys.executable,
                    "-m",
                    "tdkit.untrusted.runner",
                    str(scratch),
                    str(job.limits.cell_timeout),
                    str(job.limits.max_output_mb * MB),
                ],
                scratch,
                job.limits,
                readonly=readonly,
            )
        )
        record = RunRecord.parse(_read_bounded(scratch / runner.RUN_RECORD, 16 * MB))
        executed = _read_bounded(scratch / runner.EXECUTED, job.limits.max_executed_bytes)
        return SandboxOutcome(
            job.student_id,
            run.seconds,
            run.timed_out,
            run.returncode,
            run.output,
            record,
            executed.decode("utf-8", errors="replace") if executed else None,
            collect_artifacts(scratch / ARTIFACTS, job.groups),
            job.notebook,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(probe, ignore_errors=True)


def failed_outcome(student_id: str, failure: str) -> SandboxOutcome:
    """The outcome of a job that never ran, or whose worker died."""
    return SandboxOutcome(student_id, 0.0, False, None, "", RunRecord(failure=failure), None)
