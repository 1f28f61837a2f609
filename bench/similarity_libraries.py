"""copydetect against Dolos on the course's own cases: what ``tdkit similarity`` builds on.

    make bench-similarity-libraries   # npm install --prefix bench/dolos, then this script

The cases are the labelled notebooks of ``tests/files/similarity/``, function by function, with
the release's code as boilerplate for both tools (copydetect: its fingerprints removed; Dolos:
the ignored file): the copied functions (ana/gilles identical, bruno/hugo renamed, camille/iris
reordered, dimitri/fatou's ``train``) and the independent ones (every other pair of functions of
ana, bruno, camille, dimitri, elsa and fatou). For each tool and setting it prints the
lowest score of a copy, the highest of an independent pair and the margin between them (above 0:
one threshold separates them all), per function and over all, and the time to compare every
pair of a class of ``--students`` (drawn as in bench/similarity.py), copydetect in this process
on one core (reading the notebooks and fingerprinting included), Dolos in one node
process (its start and tokenizing included). Figures come from this one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from conftest import copy_course
from similarity import make_class

from tdkit.core.course import Course
from tdkit.reports.similarity import (
    SimilaritySettings,
    Unit,
    read_release,
    score_pairs,
    student_units,
)

FIXTURES = REPO / "tests" / "files" / "similarity"
DOLOS = REPO / "bench" / "dolos"
COPIES = {("ana", "gilles"), ("bruno", "hugo"), ("camille", "iris")}  # every function copied
ONE_COPIED = {("dimitri", "fatou"): "train"}
AUTHORS = ("ana", "bruno", "camille", "dimitri", "elsa", "fatou")
# Dolos's defaults (23 tokens, windows of 17) are sized for whole programs; the second setting
# for functions of 5 to 25 lines.
DOLOS_SETTINGS = ((23, 17), (12, 8))


def code_units(notebooks: dict[str, Path]) -> tuple[dict[str, dict[str, Unit]], str]:
    """Each student's functions (copydetect fingerprints, release as boilerplate), and the
    release's code."""
    settings = SimilaritySettings()
    release_path = REPO / "release" / "td_cnn" / "td_cnn.ipynb"
    release = read_release(release_path, settings)
    units = {}
    for sid, path in notebooks.items():
        found = student_units(nbformat.read(path, as_version=4), release, settings)
        units[sid] = {n: u for n, u in found.items() if u.kind == "code"}
    nb = nbformat.read(release_path, as_version=4)
    return units, "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def copydetect_scores(units: dict[str, dict[str, Unit]]) -> dict[tuple[str, str, str], float]:
    pairs = score_pairs(units, set(), SimilaritySettings(), workers=1)
    return {(p.a, p.b, n): m.score for p in pairs for n, m in p.units.items()}


def dolos_scores(
    units: dict[str, dict[str, Unit]], release_code: str, k: int, window: int, scratch: Path
) -> tuple[dict[tuple[str, str, str], float], float]:
    """Dolos on one folder per function (the same units as copydetect), wall time of node."""
    ignored = scratch / "release.py"
    ignored.write_text(release_code, encoding="utf-8")
    folders = []
    for name in sorted({n for u in units.values() for n in u}):
        folder = scratch / name
        folder.mkdir(exist_ok=True)
        for sid, found in units.items():
            if name in found:
                (folder / f"{sid}.py").write_text(found[name].text, encoding="utf-8")
        folders.append(str(folder))
    start = time.perf_counter()
    run = subprocess.run(
        ["node", str(DOLOS / "compare.mjs"), str(ignored), str(k), str(window), *folders],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    scores = {}
    for line in run.stdout.splitlines():
        row = json.loads(line)
        if "seconds" in row:
            continue
        a, b = sorted(Path(row[side]).stem for side in ("left", "right"))
        scores[(a, b, Path(row["folder"]).name)] = float(row["similarity"])
    return scores, seconds


def labelled(
    units: dict[str, dict[str, Unit]],
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(copied functions, independent functions) as (student, student, function)."""
    copies, independent = set(), set()
    for a, b in combinations(sorted(units), 2):
        for name in set(units[a]) & set(units[b]):
            if (a, b) in COPIES or ONE_COPIED.get((a, b)) == name:
                copies.add((a, b, name))
            elif a in AUTHORS and b in AUTHORS:
                independent.add((a, b, name))
    return copies, independent


def separation(
    scores: dict[tuple[str, str, str], float],
    copies: set[tuple[str, str, str]],
    independent: set[tuple[str, str, str]],
    name: str | None,
) -> tuple[float, float]:
    """(lowest copy, highest independent pair) for one function, or over all when ``name`` is None."""
    low = min(scores.get(c, 0.0) for c in copies if name in (None, c[2]))
    high = max(scores.get(i, 0.0) for i in independent if name in (None, i[2]))
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200)
    args = parser.parse_args()
    if not (DOLOS / "node_modules" / "@dodona" / "dolos-lib").is_dir():
        sys.exit(
            "Dolos is not installed: npm install --prefix bench/dolos (or make bench-similarity-libraries)"
        )
    notebooks = {p.stem: p for p in sorted(FIXTURES.glob("*.ipynb")) if p.stem != "jules"}
    units, release_code = code_units(notebooks)
    copies, independent = labelled(units)
    tools = {"copydetect (k=25, window 6)": copydetect_scores(units)}
    with tempfile.TemporaryDirectory(prefix="tdkit-bench-libraries-") as scratch:
        for k, window in DOLOS_SETTINGS:
            folder = Path(scratch) / f"dolos-{k}"
            folder.mkdir()
            tools[f"Dolos (k={k}, window {window})"] = dolos_scores(
                units, release_code, k, window, folder
            )[0]
        course = Course(copy_course(Path(scratch) / "class"))
        make_class(course, args.students, seed=0)
        start = time.perf_counter()  # copydetect's time includes reading and fingerprinting
        class_units, _ = code_units(
            {sid.name: course.submitted_notebook(sid.name) for sid in course.submitted.iterdir()}
        )
        copydetect_scores(class_units)
        timings = {"copydetect": time.perf_counter() - start}
        for k, window in DOLOS_SETTINGS:
            folder = Path(scratch) / f"class-dolos-{k}"
            folder.mkdir()
            timings[f"Dolos k={k}"] = dolos_scores(class_units, release_code, k, window, folder)[1]
    names = sorted({c[2] for c in copies})
    print(f"{len(copies)} copied functions, {len(independent)} independent pairs of functions")
    print("lowest copy / highest independent (margin) per function; 'all': over every function")
    width = max(len(t) for t in tools)
    print(f"{'':{width}}  " + "  ".join(f"{n[:17]:>17}" for n in [*names, "all"]))
    for tool, scores in tools.items():
        cells = []
        for name in [*names, None]:
            low, high = separation(scores, copies, independent, name)
            cells.append(f"{low:.2f}/{high:.2f} ({low - high:+.2f})")
        print(f"{tool:{width}}  " + "  ".join(f"{c:>17}" for c in cells))
    n_pairs = args.students * (args.students - 1) // 2
    print(
        f"every pair of {args.students} students ({n_pairs} pairs, each function): "
        + ", ".join(f"{tool} {seconds:.1f} s" for tool, seconds in timings.items())
    )


if __name__ == "__main__":
    main()
