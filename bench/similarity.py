"""``tdkit similarity`` on a class of 200: its time beside one grading, and its false positives.

    make bench-similarity   # .venv/bin/python bench/similarity.py [--students 200] [--no-grading]

Builds ``--students`` submissions from the independent authors of ``tests/files/similarity/`` (ana,
bruno, camille, dimitri, elsa, fatou: six styles of each function and answer, five of ``train``,
fatou's being dimitri's): each student takes, for each function and each answer, the style of an
author drawn at random (seeded). Two students who drew the same author for a function hand in
the same function, renamed or not it is one text: a copy. A pair that drew different authors for
everything is two independent correct solutions. In a fresh course directory it times
``similarity()`` (wall, and CPU of its process and workers), then, unless ``--no-grading``, one
``tdkit grade`` of one correct submission in the same run (release registered first, not timed).
Prints the time of each, the false-positive rate (pairs sharing no function reported) and, by
number of functions and answers shared, the share of pairs reported. Figures come from this one
run: the machine is noisy, so compare side by side, never with a remembered number.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import copy_course

from tdkit.core.course import Course
from tdkit.reports.similarity import similarity

FIXTURES = REPO / "tests" / "files" / "similarity"
AUTHORS = ("ana", "bruno", "camille", "dimitri", "elsa", "fatou")
NOT_HERS = {"fatou": {"train"}}  # fatou's train is dimitri's: not an independent style
CORRECT = REPO / "examples" / "td_cnn" / "submissions" / "alice_solution.ipynb"


def solutions(author: str) -> dict[str, str]:
    """grade_id -> source of the author's solution cells."""
    nb = nbformat.read(FIXTURES / f"{author}.ipynb", as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def make_class(course: Course, n: int, seed: int) -> dict[str, dict[str, str]]:
    """Write ``n`` submissions; return each student's author per solution cell."""
    styles = {a: solutions(a) for a in AUTHORS}
    template = nbformat.read(FIXTURES / "ana.ipynb", as_version=4)
    rng = random.Random(seed)
    drawn: dict[str, dict[str, str]] = {}
    for i in range(n):
        sid = f"s{i:03d}"
        nb = copy.deepcopy(template)
        drawn[sid] = {}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("solution"):
                continue
            gid = meta["grade_id"]
            author = rng.choice([a for a in AUTHORS if gid not in NOT_HERS.get(a, set())])
            drawn[sid][gid] = author
            cell.source = styles[author][gid]
        path = course.submitted_notebook(sid)
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return drawn


def cpu_seconds() -> float:
    """CPU time of this process and of the workers it waited for."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def grading_seconds(root: Path) -> float:
    """Wall time of one ``tdkit grade`` of one correct submission, release registered beforehand."""
    from tdkit.release.generate import release
    from tdkit.trusted.grade import grade_all

    course = Course(copy_course(root))
    release(course, verify=False)
    path = course.submitted_notebook("alice")
    path.parent.mkdir(parents=True)
    shutil.copy(CORRECT, path)
    start = time.perf_counter()
    run = grade_all(course, workers=1, progress=lambda line: None)
    seconds = time.perf_counter() - start
    assert len(run.graded) == 1, run
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-grading", action="store_true", help="skip the grading baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdkit-bench-similarity-") as scratch:
        course = Course(copy_course(Path(scratch) / "class"))
        drawn = make_class(course, args.students, args.seed)
        cpu, start = cpu_seconds(), time.perf_counter()
        result = similarity(course)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        graded = None if args.no_grading else grading_seconds(Path(scratch) / "graded")
    print(
        f"cores: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"similarity: {args.students} submissions, {len(result.pairs)} pairs in {wall:.1f} s "
        f"({cpu:.1f} s CPU); page {result.html.name} and {result.csv.name} included"
    )
    if graded is not None:
        print(f"one grading (tdkit grade, one correct submission, same run): {graded:.1f} s")
    by_shared: Counter[int] = Counter()
    reported: Counter[int] = Counter()
    alone: Counter[str] = Counter()  # pairs sharing exactly one unit: which one
    alone_reported: Counter[str] = Counter()
    for pair in result.pairs:
        shared = [g for g, a in drawn[pair.a].items() if drawn[pair.b][g] == a]
        by_shared[len(shared)] += 1
        reported[len(shared)] += pair.reported
        if len(shared) == 1:
            alone[shared[0]] += 1
            alone_reported[shared[0]] += pair.reported
    print(
        f"false positives: {reported[0]} of {by_shared[0]} pairs of independent solutions "
        f"(no function or answer shared) reported: {reported[0] / max(by_shared[0], 1):.2%}"
    )
    independent = [
        p for p in result.pairs if not any(drawn[p.a][g] == drawn[p.b][g] for g in drawn[p.a])
    ]
    closest = max((m for p in independent for m in p.units.values()), key=lambda m: m.score)
    print(
        f"closest independent pair: code z {max(p.code_z for p in independent):.1f}, answers z "
        f"{max(p.text_z for p in independent):.1f} (threshold {result.settings.threshold:g}); "
        f"highest function score {closest.score:.0%} ({closest.name}, {closest.matched} characters)"
    )
    print("functions and answers shared -> pairs, reported")
    for k in sorted(by_shared):
        print(f"  {k:2d}: {by_shared[k]:6d} pairs, {reported[k] / by_shared[k]:7.1%} reported")
    print("one solution cell shared, nothing else -> pairs, reported")
    for gid in sorted(alone, key=lambda g: -alone_reported[g] / alone[g]):
        print(
            f"  {gid:20s} {alone[gid]:5d} pairs, {alone_reported[gid] / alone[gid]:7.1%} reported"
        )


if __name__ == "__main__":
    main()
