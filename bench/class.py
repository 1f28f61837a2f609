"""A whole class through tdkit: collect, grade, reports, then late changes graded again.

    make bench-class        # .venv/bin/python bench/class.py [--students 200] [--workers 2] [--changed 5]

Builds ``--students`` submissions from the example styles (``examples/td_cnn/submissions/``: correct
and buggy mixed, one in ten broken or hostile), packs them as a Moodle export, and in a fresh
course directory (no gradebook: the first ``tdkit grade`` registers the release) runs the
commands an instructor runs, timing each: ``tdkit collect``, ``tdkit grade --workers N`` (which
writes the reports), the reports alone (every page rendered again), then ``--changed``
submissions change in a second export, ``tdkit collect --force`` and ``tdkit grade`` again, and
a last ``tdkit grade`` with nothing changed. ``--regrade DIR`` measures the late submissions again
on a class kept by an earlier run (``--keep DIR``, same tdkit, so nobody else is regraded): other
students hand in a new version. Prints wall time per stage, seconds per submission,
the grader's peak memory and what the unchanged submissions cost: the second run's time less
its grading loop (as ``tdkit grade`` reports it), and the last run's time. Figures come from this one
run: the machine is noisy, so compare side by side, never with a remembered number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import copy_course, td_cnn

from tdkit.core.course import Course
from tdkit.reports.html import render_reports
from tdkit.reports.results import read_results_json

EXAMPLES = REPO / "examples" / "td_cnn" / "submissions"
CORRECT = "alice_solution"
BUGGY = (
    "bob_td_loop_kept",
    "chloe_unanswered",
    "david_zero_grad_between",
    "emma_percent",
    "farid_transposed_precision",
    "gaelle_sum_and_x0",
    "ines_crash_midway",
)
# Cells a hostile student adds after the imports: each is stopped or contained by the sandbox.
HOSTILE = {
    "snoops": (
        "import os, socket\n"
        "for path in ('{course}/reference/td_cnn.py', '{course}/gradebook.db'):\n"
        "    print(path, os.path.exists(path))\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError as error:\n"
        "    print('réseau :', error)"
    ),
    "floods": "print('x' * 20_000_000)",
    "exits": "import os\nos._exit(3)",
}
BROKEN = {
    "empty": b"",
    "truncated": b'{"cells": [{"cell_type": "code", "source": "import torch',
    "zip_renamed": b"PK\x03\x04" + bytes(60),
}


ODD_SLOTS = (3, 11)  # places, in each 20 students, of a broken or hostile submission


@dataclass(frozen=True)
class Student:
    sid: str  # the Moodle participant id
    style: str  # example name, or hostile:/broken: kind


def roster(n: int) -> list[Student]:
    """Mostly the example styles (the correct one three times as often), one in ten broken or hostile."""
    styles = [CORRECT, *BUGGY[:4], CORRECT, *BUGGY[4:], CORRECT]
    odd = [
        f"{kind}:{name}"
        for pair in zip(HOSTILE, BROKEN)
        for kind, name in zip(("hostile", "broken"), pair)
    ]
    students = []
    for i in range(n):
        if i % 20 in ODD_SLOTS:  # the k-th odd one takes the k-th odd style
            style = odd[(2 * (i // 20) + ODD_SLOTS.index(i % 20)) % len(odd)]
        else:
            style = styles[i % len(styles)]
        students.append(Student(str(10001 + i), style))
    return students


def notebook_bytes(student: Student, course: Path, note: str = "") -> bytes:
    kind, _, name = student.style.partition(":")
    if kind == "broken":
        return BROKEN[name]
    nb = nbformat.read(
        EXAMPLES / f"{CORRECT if kind == 'hostile' else student.style}.ipynb", as_version=4
    )
    if kind == "hostile":
        imports = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        cell = nbformat.v4.new_code_cell(HOSTILE[name].format(course=course))
        cell.id = f"hostile-{name}"  # fixed ids: the same student, the same bytes in every export
        nb.cells.insert(imports + 1, cell)
    # Each student's own file: a note of who handed it in (and, once changed, what changed).
    cell = nbformat.v4.new_markdown_cell(f"Rendu par {student.sid}. {note}".strip())
    cell.id = "rendu"
    nb.cells.append(cell)
    return nbformat.writes(nb).encode("utf-8")


def moodle_export(
    students: list[Student], course: Path, archive: Path, changed: dict[str, Student]
) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for student in students:
            now = changed.get(student.sid, student)
            note = "Version corrigée." if student.sid in changed else ""
            zf.writestr(
                f"Étudiant {student.sid}_{student.sid}_assignsubmission_file_/td_cnn.ipynb",
                notebook_bytes(now, course, note),
            )
    return archive


def peak_rss_mb(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """The process's high-water mark of resident memory (VmHWM), read until it exits."""
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(0.2)


def tdkit(course: Path, *args: str) -> tuple[float, float, str]:
    """Run ``tdkit ARGS`` in the course: wall seconds, peak memory (MB) and the output's tail."""
    command = [str(Path(sys.executable).parent / "tdkit"), *args]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=course, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=peak_rss_mb, args=(process.pid, stop, peak), daemon=True)
    watcher.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"tdkit {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    return seconds, peak[0], output


def grading_seconds(output: str) -> float:
    """What ``tdkit grade`` says its grading loop took (the changed submissions run and judged)."""
    found = re.search(r"^graded \d+ submission\(s\) in ([0-9.]+) s", output, re.MULTILINE)
    if found is None:
        raise SystemExit(f"tdkit grade did not say how long its grading took:\n{output[-2000:]}")
    return float(found.group(1))


def changes(students: list[Student], n: int, offset: int = 1) -> dict[str, Student]:
    """``n`` students hand in a new version: a buggy notebook fixed, or a correct one broken.
    Another ``offset`` (1 or 2) picks ``n`` other students."""
    picked = [s for s in students if not s.style.startswith(("hostile", "broken"))][
        offset : offset + 3 * n : 3
    ][:n]
    return {s.sid: Student(s.sid, BUGGY[0] if s.style == CORRECT else CORRECT) for s in picked}


def regrade(
    root: Path,
    scratch: Path,
    students: list[Student],
    before: dict[str, Student],
    changed: dict[str, Student],
    workers: int,
    say: Callable[[str], None],
) -> None:
    """The late submissions: ``changed`` hand in a new version (``before`` keep the one they
    handed in already), collect, grade, then grade with nothing changed; what it cost."""
    course = Course(root)
    results = read_results_json(course.reports / "results.json")
    handed_in = {**before, **changed}  # every student's latest version that differs from the first
    export = moodle_export(students, root, scratch / "export-late.zip", handed_in)
    seconds, _, _ = tdkit(root, "collect", "--force", str(export))
    say(f"collect --force ({len(changed)} changed): {seconds:.1f} s")
    seconds, peak, output = tdkit(root, "grade", "--workers", str(workers))
    grading = grading_seconds(output)
    kept = len(students) - len(changed)
    say(
        f"grade again, {len(changed)} changed: {seconds:.1f} s, grader peak memory {peak:.0f} MB; grading the "
        f"{len(changed)} took {grading:.1f} s, so the {kept} unchanged cost {seconds - grading:.1f} s in all "
        "(tdkit's start included; target: under 10 s)"
    )
    say("  " + next(line for line in output.splitlines() if line.startswith("skipped")))
    seconds, _, output = tdkit(root, "grade", "--workers", str(workers))
    say(
        f"grade again, nothing changed: {seconds:.1f} s for the {len(students)} unchanged "
        f"({1000 * seconds / len(students):.0f} ms per student at most), tdkit's start included"
    )
    scores = read_results_json(course.reports / "results.json").students
    regraded = {
        sid for sid, s in scores.items() if s.fingerprint != results.students[sid].fingerprint
    }
    say(
        f"results that changed over these runs: {len(regraded)} "
        f"(the {len(changed)} changed submissions: {regraded == set(changed)})"
    )
    by_style: dict[str, list[float]] = {}
    for student in students:
        style = handed_in.get(student.sid, student).style
        if student.sid in scores:  # collect turns some broken files away: reported there
            by_style.setdefault(style, []).append(scores[student.sid].score)
    say("scores by style: " + json.dumps({k: sorted(set(v)) for k, v in sorted(by_style.items())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200, help="submissions in the class")
    parser.add_argument("--workers", type=int, default=2, help="tdkit grade --workers")
    parser.add_argument(
        "--changed", type=int, default=5, help="submissions changed before grading again"
    )
    parser.add_argument("--keep", type=Path, default=None, help="build the course here and keep it")
    parser.add_argument(
        "--regrade",
        type=Path,
        default=None,
        help="a class this benchmark graded and kept (--keep, same --students and --changed) with "
        "the same tdkit: measure the late submissions again on it (other students change)",
    )
    args = parser.parse_args()
    if args.changed > args.students // 3:
        raise SystemExit("--changed must be at most a third of --students")

    def say(text: str) -> None:
        print(text, flush=True)

    students = roster(args.students)
    with tempfile.TemporaryDirectory(prefix="tdkit-class-") as scratch:
        if args.regrade is not None:
            say(
                f"late submissions again in the class kept at {args.regrade} (load average {os.getloadavg()[0]:.2f})"
            )
            before = changes(students, args.changed)
            regrade(
                args.regrade,
                Path(scratch),
                students,
                before,
                changes(students, args.changed, offset=2),
                args.workers,
                say,
            )
            say(f"load average {os.getloadavg()[0]:.2f} at the end")
            return
        root = copy_course(args.keep or Path(scratch) / "course")
        say(f"class of {args.students} in {root} (load average {os.getloadavg()[0]:.2f} at start)")
        started = time.perf_counter()
        first = moodle_export(students, root, Path(scratch) / "export-1.zip", {})
        say(f"build {args.students} notebooks + export: {time.perf_counter() - started:.1f} s")

        seconds, _, output = tdkit(root, "collect", str(first))
        say(f"collect: {seconds:.1f} s ({output.strip().splitlines()[-1]})")
        seconds, peak, output = tdkit(root, "grade", "--workers", str(args.workers))
        say(
            f"grade --workers {args.workers} (first, fresh gradebook): {seconds:.1f} s, "
            f"{seconds / args.students:.2f} s per submission, grader peak memory {peak:.0f} MB"
        )
        say("  " + output.strip().splitlines()[-4])

        course = Course(root)
        results = read_results_json(course.reports / "results.json")
        started = time.perf_counter()
        render_reports(results, td_cnn(), course.reports / "html")
        say(
            f"reports alone (all {len(results.students)} pages and the summary rendered again): "
            f"{time.perf_counter() - started:.1f} s"
        )
        regrade(
            root, Path(scratch), students, {}, changes(students, args.changed), args.workers, say
        )
        say(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
