"""Where the test suite's CPU goes, process by process: what a 5-minute `make test` must fit in.

    make bench-suite        # .venv/bin/python bench/suite_cpu.py [pytest arguments]

Runs the suite (``pytest -q`` and the arguments given) under Linux process accounting, which
records every process that exits: its CPU time, user id, parent and name, forks that never
exec included (the zygote's runs, Chromium's renderers). The records are grouped by what the
process is (a sandboxed run, Chromium, a ``tdkit`` or ``nbgrader`` command, a Jupyter server...)
and printed beside the budget that a 5-minute suite has on this machine's cores. Needs root and
the ``acct`` package (``accton``): ``apt-get install acct``. Figures come from this one run.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from tdkit.untrusted.sandbox import UID_BASE, UID_COUNT

TARGET_SECONDS = 300  # issue 13: `make test` in 5 minutes
RECORD = struct.Struct("<BBHIIIIIIf8H16s")  # struct acct_v3 (linux/acct.h), 64 bytes
AHZ = 100  # comp_t units per second


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    uid: int
    name: str
    cpu: float  # user + system seconds of this process alone (not its children)


def _comp(value: int) -> int:
    """A comp_t: 13-bit mantissa, 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def read_accounting(path: Path) -> list[Process]:
    data = path.read_bytes()
    processes = []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[1] != 3:  # ac_version: only acct_v3 records carry the parent's pid
            raise SystemExit(f"{path}: accounting records of version {fields[1]}, not 3")
        utime, stime, name = fields[10], fields[11], fields[18]
        processes.append(
            Process(
                pid=fields[6],
                ppid=fields[7],
                uid=fields[4],
                name=name.split(b"\0")[0].decode(errors="replace"),
                cpu=(_comp(utime) + _comp(stime)) / AHZ,
            )
        )
    return processes


GROUPS = {  # a process's name -> its group (the rest: by where it sits in the process tree)
    "tdkit": "`tdkit` commands (start, imports, first judgement, reports)",
    "nbgrader": "`nbgrader` commands (export, formgrader API)",
    "postgres": "PostgreSQL",
    "initdb": "PostgreSQL",
    "dask": "Dask scheduler and workers",
}


def _sandboxed(process: Process) -> bool:
    return UID_BASE <= process.uid < UID_BASE + UID_COUNT


def _ancestors(process: Process, parents: dict[int, Process]) -> Iterator[Process]:
    """The recorded parent, its parent... (a parent still running at the end has no record)."""
    ancestor, seen = parents.get(process.ppid), 0
    while ancestor is not None and seen < 30:  # pids are reused: a cycle must end
        yield ancestor
        ancestor, seen = parents.get(ancestor.ppid), seen + 1


def shared_spawner(processes: list[Process], parents: dict[int, Process], pytest_pid: int) -> int:
    """The child of pytest's main process with the most sandboxed descendants: the suite's one zygote
    spawner (conftest.py), which every worker's and every `tdkit` command's runs fork from."""
    below: collections.Counter[int] = collections.Counter()
    for process in processes:
        if _sandboxed(process):
            top = next((a for a in _ancestors(process, parents) if a.ppid == pytest_pid), None)
            if top is not None:
                below[top.pid] += 1
    return below.most_common(1)[0][0] if below else -1


def group_of(process: Process, parents: dict[int, Process], pytest_pid: int, spawner: int) -> str:
    above = {a.pid for a in _ancestors(process, parents)}
    if _sandboxed(process):
        return "sandboxed runs (students' kernels, runners)"
    if spawner == process.pid or spawner in above:
        return "the zygote spawner and its zygotes (preloading, forking)"
    if process.name.startswith(("chromium", "chrome", "node")):
        return "Chromium and Playwright's driver"
    if process.name.startswith("jupyter"):
        return "Jupyter servers (formgrader, JupyterLab)"
    if process.name in GROUPS:
        return GROUPS[process.name]
    if process.pid == pytest_pid:
        return "pytest's main process (collection, scheduling)"
    if process.ppid == pytest_pid and process.name == "python":
        return "pytest-xdist workers: the tests' own code, in-process grading's trusted side"
    if pytest_pid in above:
        if process.name.startswith("python"):
            return "other Python processes (fresh kernels, the TD-only venv, `python -c`)"
        return "other commands"
    return "outside the tests (or parent gone)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (default: the suite)")
    args = parser.parse_args()
    accton = shutil.which("accton")
    if os.geteuid() != 0 or accton is None:
        raise SystemExit("needs root and accton (apt-get install acct): process accounting")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tdkit-acct-") as scratch:
        record = Path(scratch) / "pacct"
        record.touch()
        subprocess.run([accton, str(record)], check=True, capture_output=True)
        started = time.perf_counter()
        try:
            pytest = subprocess.Popen(
                [
                    str(REPO / ".venv" / "bin" / "pytest"),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *args.pytest_args,
                ],
                cwd=REPO,
            )
            code = pytest.wait()
        finally:
            wall = time.perf_counter() - started
            time.sleep(1)  # the last records are written as their processes are reaped
            subprocess.run([accton, "off"], check=True, capture_output=True)
        processes = read_accounting(record)
    parents = {p.pid: p for p in processes}
    totals: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter[str] = collections.Counter()
    spawner = shared_spawner(processes, parents, pytest.pid)
    for process in processes:
        group = group_of(process, parents, pytest.pid, spawner)
        totals[group] += process.cpu
        counts[group] += 1
    total = sum(totals.values())
    budget = TARGET_SECONDS * cores
    print(f"\npytest exited with {code}; {len(processes)} processes recorded, {cores} CPUs")
    print(f"{'CPU s':>8} {'share':>6} {'procs':>6}  group")
    for group, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{seconds:8.1f} {seconds / total:6.1%} {counts[group]:6d}  {group}")
    runs = [p.cpu for p in processes if _sandboxed(p) and p.cpu >= 2.0]
    print(
        f"{total:8.1f} CPU s in all, {wall:.0f} s wall: {total / (wall * cores):.0%} of {cores} CPUs busy"
    )
    print(
        f"a {TARGET_SECONDS} s suite on {cores} CPUs has at most {budget} CPU s: this run used "
        f"x{total / budget:.2f} of it"
    )
    if runs:
        print(
            f"yardstick from the same run: {len(runs)} sandboxed processes of 2 s or more (kernels "
            f"of graded notebooks), median {statistics.median(runs):.2f} s CPU each, "
            f"{sum(runs):.0f} s in all"
        )


if __name__ == "__main__":
    main()
