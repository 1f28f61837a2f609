"""Grading throughput: ``tdkit grade`` against plain ``nbgrader autograde`` on the same notebooks.

    make bench-grading      # .venv/bin/python bench/grading.py [--copies 2] [--nbgrader 2]

Grades ``--copies`` copies of every example submission (mixed correct and buggy) with 1 and 2
workers, checks that both give identical checks, prints seconds per submission and where a
submission's time goes (and what killing the kernel at the end saves over a graceful
shutdown), then grades ``--nbgrader`` of the same notebooks with plain
``nbgrader autograde`` and the notebook's default parameters (the real data: ``TDKIT_CIFAR10``
or ``../shared/cifar10``), and prints the ratio. Figures come from this one run: the machine
is noisy, so compare side by side, never with a remembered number.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import copy_course, td_cnn

from tdkit.core.course import Course
from tdkit.release.generate import release
from tdkit.release.parameters import inject_parameters
from tdkit.trusted.grade import GradeRun, grade_all, judge, prepare_job
from tdkit.untrusted import zygote
from tdkit.untrusted.execute import SHUTDOWN, cell_seconds, execute_notebook
from tdkit.untrusted.job import execute_job

EXAMPLES = REPO / "examples" / "td_cnn" / "submissions"
IMPORTS = "import datasets, matplotlib.pyplot, numpy, polars, torch"


def cpu_seconds() -> float:
    """CPU time of this process and of every child it waited for (zygotes included, once closed)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")  # an object's repr: different in every process


def displayed(course: Course, students: list[str]) -> dict[str, list[str]]:
    """What each autograded notebook shows, cell by cell: stream chunks joined (how the kernel
    flushed them is timing), object addresses masked, no metadata."""
    shown = {}
    for sid in students:
        nb = nbformat.read(course.autograded_notebook(sid), as_version=4)
        cells = []
        for cell in nb.cells:
            outputs: list[dict[str, object]] = []
            for output in cell.get("outputs", []):
                kept = {k: v for k, v in output.items() if k != "metadata"}
                last = outputs[-1] if outputs else {}
                if kept.get("output_type") == "stream" and last.get("name") == kept.get("name"):
                    last["text"] = str(last["text"]) + str(kept["text"])
                else:
                    outputs.append(kept)
            cells.append(ADDRESS.sub("0x…", json.dumps(outputs)))
        shown[sid] = cells
    return shown


KERNEL_CPU = "import resource as _r\n_u = _r.getrusage(_r.RUSAGE_SELF)\nprint('KERNEL-CPU:', _u.ru_utime + _u.ru_stime)"


def kernel_cpu(course: Course, student: str) -> dict[str, float]:
    """CPU seconds of the kernel itself (start, imports, every cell) on each path, the same notebook."""
    nb = nbformat.read(course.submitted_notebook(student), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CPU))
    target = course.submitted_notebook("kernel_cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    seconds = {}
    for path, switch in (("zygote", "1"), ("plain", "0")):
        os.environ[zygote.ZYGOTE_ENV] = switch
        outcome = execute_job(prepare_job(course, "kernel_cpu"))
        text = outcome.executed or ""
        found = re.search(r"KERNEL-CPU: ([0-9.]+)", text)
        seconds[path] = float(found.group(1)) if found else float("nan")
    os.environ[zygote.ZYGOTE_ENV] = "1"
    shutil.rmtree(target.parent.parent)
    return seconds


def children_cpu() -> float:
    """CPU time of every child this process waited for: a zygote's, with all its runs, once closed."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def zygote_start() -> tuple[float, float, float, float]:
    """Wall and CPU seconds to start the spawner with its first zygote (preloading the course's
    modules), the CPU of a second zygote (a fork of the spawner), and of their exits."""
    zygote.close_all()
    started, cpu = time.perf_counter(), children_cpu()
    zygote.warm(td_cnn().preload)
    wall = time.perf_counter() - started
    preload = zygotes_cpu()
    zygote.warm(td_cnn().preload)
    second = zygotes_cpu() - preload
    zygote.close_all()
    return wall, preload, second, children_cpu() - cpu - preload - second


def kill_zygotes() -> None:
    """Stop the idle zygotes at once, so that their exit's CPU is not counted as a run's."""
    for pid in zygote.idle_pids():
        os.kill(pid, signal.SIGKILL)
    zygote.close_all()  # the spawner reaps them, then exits: their CPU counts as ours


def zygotes_cpu() -> float:
    """CPU of the spawner and the idle zygotes so far, the children they waited for included
    (preloading spawns some)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    spawner = zygote.spawner_pid()
    for pid in ([spawner] if spawner is not None else []) + zygote.idle_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return total


def cpu_breakdown(course: Course, student: str) -> dict[str, float]:
    """Where one forked submission's CPU goes: the kernel's own per phase (its CPU printed before each
    code cell and at the end), the rest of the run (bubblewrap, the zygote's fork, runner, forker),
    and the grader's sides."""
    started = time.process_time()
    job = prepare_job(course, student)
    parts: dict[str, float] = {"sanitise + parameters (trusted)": time.process_time() - started}
    nb = nbformat.reads(job.notebook, as_version=4)
    cells, phases = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(KERNEL_CPU))
            phases.append(phase(cell, index))
        cells.append(cell)
    nb.cells = [*cells, nbformat.v4.new_code_cell(KERNEL_CPU)]
    zygote.close_all()
    zygote.warm(td_cnn().preload)
    preload = zygotes_cpu()
    own, children = time.process_time(), children_cpu()
    outcome = execute_job(dataclasses.replace(job, notebook=nbformat.writes(nb)))
    kill_zygotes()
    run = children_cpu() - children - preload  # the zygote's whole life less its preloading
    parts["the run, grader side (scratch, artifacts)"] = time.process_time() - own
    # (the phase that follows, the kernel's CPU there); a stamp whose output was lost (a kernel's
    # first output can be) adds its phase to the one before
    stamps: list[tuple[str, float]] = []
    following = iter([*phases, "end"])
    executed = nbformat.reads(outcome.executed, as_version=4) if outcome.executed else None
    for cell in executed.cells if executed else []:
        if cell.cell_type == "code" and cell.source == KERNEL_CPU:
            name = next(following, "end")
            found = re.search(r"KERNEL-CPU: ([0-9.]+)", json.dumps(cell.get("outputs", [])))
            if found:
                stamps.append((name, float(found.group(1))))
    if stamps and stamps[-1][0] == "end":
        parts["kernel start (forked) + import guard"] = stamps[0][1]
        for (name, before), (_, after) in itertools.pairwise(stamps):
            parts[name] = parts.get(name, 0.0) + after - before
        parts["sandbox, zygote fork, runner, forker"] = run - stamps[-1][1]
    else:
        parts["the run (the kernel's last stamp missing)"] = run
    started = time.process_time()
    judge(course, outcome)
    parts["hidden checks + gradebook (trusted)"] = time.process_time() - started
    return parts


def submit(course: Course, copies: int) -> list[str]:
    students = []
    for notebook in sorted(EXAMPLES.glob("*.ipynb")):
        for k in range(copies):
            sid = f"{notebook.stem}_{k}"
            target = course.submitted_notebook(sid)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, target)
            students.append(sid)
    return students


def phase(cell: nbformat.NotebookNode, index: int) -> str:
    source, meta = cell.source, cell.get("metadata", {})
    if "tdkit-probe" in meta.get("tags", []):
        return "probe"
    if meta.get("nbgrader", {}).get("grade"):
        return "visible tests"
    if index <= 2 and "import" in source:
        return "imports"
    if "load_dataset(" in source or "to_uint8(" in source or "to_zdata_dataset(" in source:
        return "data loading"
    if "train(" in source or "train_minibatch(" in source:
        return "training (grading profile)"
    return "other cells"


def breakdown(course: Course, student: str) -> dict[str, float]:
    """Where one submission's time goes, from a run of its own."""
    started = time.perf_counter()
    job = prepare_job(course, student)
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    outcome = execute_job(job)
    untrusted = time.perf_counter() - started
    started = time.perf_counter()
    judge(course, outcome)
    trusted = time.perf_counter() - started
    executed = nbformat.reads(outcome.executed, as_version=4) if outcome.executed else None
    parts: dict[str, float] = {"sanitise + parameters (trusted)": prepared}
    for index, cell in enumerate(executed.cells if executed else []):
        parts[phase(cell, index)] = parts.get(phase(cell, index), 0.0) + cell_seconds(cell)
    parts["sandbox, kernel start, runner"] = untrusted - sum(parts.values()) + prepared
    parts["hidden checks + gradebook (trusted)"] = trusted
    return parts


def kernel_round_trips(repeats: int = 3) -> dict[str, float]:
    """Median seconds to start a kernel, import the notebook's libraries and stop it, per shutdown mode."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(IMPORTS)])
    seconds: dict[str, list[float]] = {"graceful": [], "immediate": []}
    with tempfile.TemporaryDirectory(prefix="tdkit-kernel-") as scratch:
        for _ in range(repeats):
            for mode, values in seconds.items():
                values.append(
                    execute_notebook(nbformat.from_dict(nb), scratch, shutdown=mode).seconds
                )
    return {mode: statistics.median(values) for mode, values in seconds.items()}


def nbgrader_autograde(course: Course, students: list[str]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of plain ``nbgrader autograde`` per submission (kernel included: waited for)."""
    data = os.environ.get("TDKIT_CIFAR10") or str(REPO.parent / "shared" / "cifar10")
    scripts = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ["PATH"]}
    for sid in students:  # the notebook reads DATA_SOURCE with datasets alone: name the local copy
        path = course.submitted_notebook(sid)
        nbformat.write(
            inject_parameters(nbformat.read(path, as_version=4), {"DATA_SOURCE": data}), path
        )
    seconds, cpu = [], []
    for sid in students:
        started, children = time.perf_counter(), children_cpu()
        subprocess.run(
            [
                os.path.join(scripts, "nbgrader"),
                "autograde",
                course.assignment,
                "--student",
                sid,
                "--force",
                "--Execute.timeout=3600",
            ],
            cwd=course.root,
            env=env,
            check=False,
            capture_output=True,
        )
        seconds.append(time.perf_counter() - started)
        cpu.append(children_cpu() - children)
        print(f"  nbgrader autograde {sid}: {seconds[-1]:.1f} s, {cpu[-1]:.1f} s CPU", flush=True)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of each example submission")
    parser.add_argument(
        "--nbgrader", type=int, default=2, help="submissions graded by plain nbgrader"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdkit-bench-") as root:
        course = Course(copy_course(Path(root) / "course"))
        release(course, verify=False)
        students = submit(course, args.copies)
        print(
            f"{len(students)} submissions ({args.copies} copies of {len(students) // args.copies} examples), "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        runs: dict[tuple[str, int], GradeRun] = {}
        cpus: dict[tuple[str, int], float] = {}
        shown: dict[tuple[str, int], dict[str, list[str]]] = {}
        for path, switch in (("zygote", "1"), ("plain", "0")):
            os.environ[zygote.ZYGOTE_ENV] = switch
            for workers in (1, 2):
                started, cpu = time.perf_counter(), cpu_seconds()
                run = grade_all(course, everyone=True, workers=workers, progress=lambda line: None)
                zygote.close_all()  # as `tdkit grade` exits: its zygotes' CPU, runs included, counts
                wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
                runs[path, workers] = run
                cpus[path, workers] = cpu / len(students)
                shown[path, workers] = displayed(course, students)
                per = [s.seconds for s in run.results.students.values()]
                # bwrap does not hand its processes' CPU time back (its pid 1 is not waited for):
                # on the plain path only the grader's own side is counted.
                counted = "" if path == "zygote" else " (grader side only)"
                print(
                    f"tdkit grade --workers {workers}, {path} path: {cpu / len(students):.2f} s CPU{counted} and "
                    f"{wall / len(students):.1f} s wall per submission ({cpu:.1f} s CPU, {wall:.1f} s wall "
                    f"in all; each run {statistics.median(per):.1f} s median, {max(per):.1f} s max)",
                    flush=True,
                )
        os.environ[zygote.ZYGOTE_ENV] = "1"
        checks = {
            key: {s: run.results.students[s].checks for s in students} for key, run in runs.items()
        }
        same = all(found == checks["plain", 1] for found in checks.values())
        print(f"identical checks on both paths, 1 and 2 workers: {same}")
        assert same, "the zygote path changed a check: compare the runs above"
        differ = [
            f"{sid} cell {index}"
            for sid, cells in shown["zygote", 1].items()
            for index, (a, b) in enumerate(zip(cells, shown["plain", 1][sid]))
            if a != b
        ]
        print(f"identical executed notebooks (outputs, 1 worker): {not differ} {differ[:10]}")
        start_wall, start_cpu, second_cpu, exit_cpu = zygote_start()
        print(
            f"the spawner and its first zygote (once per grading process): start {start_wall:.2f} s "
            f"wall, {start_cpu:.2f} s CPU; each further zygote (a fork, once per worker) "
            f"{second_cpu:.2f} s CPU; their exits {exit_cpu:.2f} s CPU"
        )
        print("where one submission's CPU goes (the full solution, forked, 1 worker):")
        parts = cpu_breakdown(course, next(s for s in students if "solution" in s))
        for name, seconds in parts.items():
            print(f"  {name:<42} {seconds:6.2f} s CPU")
        print(f"  {'in all':<42} {sum(parts.values()):6.2f} s CPU")
        zygote.warm(td_cnn().preload)  # serves the wall breakdown below
        print("where one submission's time goes (the full solution, 1 worker):")
        solution = next(s for s in students if "solution" in s)
        for name, seconds in breakdown(course, solution).items():
            print(f"  {name:<38} {seconds:6.2f} s")
        own = kernel_cpu(course, solution)
        print(
            f"the full solution's kernel, its own CPU (start, imports, every cell): {own['zygote']:.2f} s "
            f"forked from the zygote, {own['plain']:.2f} s started afresh"
        )
        trips = kernel_round_trips()
        print(
            f"kernel start + imports + stop: {trips['graceful']:.2f} s with a graceful shutdown, "
            f"{trips['immediate']:.2f} s killed at once (tdkit uses {SHUTDOWN}): "
            f"{trips['graceful'] - trips['immediate']:.2f} s saved per kernel"
        )
        if args.nbgrader:
            chosen = [solution] + [s for s in students if s.endswith("_0") and s != solution][
                : args.nbgrader - 1
            ]
            plain, plain_cpu = nbgrader_autograde(course, chosen)
            ours = statistics.mean(runs["zygote", 1].results.students[s].seconds for s in chosen)
            print(
                f"plain nbgrader autograde: {statistics.mean(plain):.1f} s per submission; tdkit: {ours:.1f} s "
                f"on the same notebooks; ratio x{statistics.mean(plain) / ours:.1f}"
            )
            print(
                f"plain nbgrader autograde: {statistics.mean(plain_cpu):.1f} s CPU per submission; tdkit "
                f"--workers 2 (forked): {cpus['zygote', 2]:.2f} s CPU per submission of the mix; "
                f"ratio x{statistics.mean(plain_cpu) / cpus['zygote', 2]:.1f}"
            )


if __name__ == "__main__":
    main()
