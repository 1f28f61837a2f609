"""Similarity between submissions: the pairs of a class that look copied, for the TA.

Every pair of submissions is compared on what the students wrote, function by function (each
function the release asks for, wherever the student defined it) and free-text answer by answer.
Fingerprints come from copydetect (winnowing, as MOSS): code is tokenized, names become ``V``/``F``,
comments and layout vanish, and every fingerprint of the release (given code, the stub of the buggy
loop, the statement) is boilerplate, never a match. Correct solutions of short functions look
alike, so a pair is reported for what stands out against the class: a robust z-score of its score
against all the class's pairs, per function and over all the functions at once. Members of a group
are never compared. The page and the CSV name students: they are the TA's, never a student's.
"""

from __future__ import annotations

import ast
import csv
import io
import multiprocessing
import os
import re
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from hashlib import blake2b
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, TypeVar

import copydetect.utils
import nbformat
import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import find_fingerprint_overlap, get_copied_slices, highlight_overlap
from markupsafe import Markup, escape
from nbformat.notebooknode import NotebookNode
from traitlets import Float, Int
from traitlets.config import Config, Configurable

from tdkit.core.config import limits_from_config
from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.core.files import write_atomically
from tdkit.intake.roster import load_roster
from tdkit.intake.submission import UnreadableSubmission, read_submission

Kind = Literal["code", "text"]
T = TypeVar("T")
SHOWN = 100  # reported pairs drawn side by side on the page, the strongest; the CSV has them all
# Below these, forking workers costs more than it saves.
STUDENTS_PER_WORKER = 16
PAIRS_PER_WORKER = 100
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation
# A class whose pairs nearly all score alike has a MAD near 0: any pair would stand out by a hair.
SPREAD_FLOOR = 0.05
# IPython magics and shell lines are not Python: blanked before parsing.
MAGIC = re.compile(r"^\s*[%!]")


@dataclass(frozen=True)
class SimilaritySettings:
    """When a pair is reported (``c.TdkitSimilarity`` in nbgrader_config.py)."""

    threshold: float = 2.5  # robust z-score against the class's pairs
    min_similarity: float = 0.6  # share (0-1) of both sides matched
    min_tokens: int = 80  # normalised characters matched, for one function alone
    noise_threshold: int = 25  # copydetect's k: shortest match counted (normalised characters)
    guarantee_threshold: int = 30  # matches this long are always found (sets the winnowing window)


class TdkitSimilarity(Configurable):
    """``c.TdkitSimilarity.<name>`` in nbgrader_config.py: when ``tdkit similarity`` reports a pair."""

    threshold = Float(
        SimilaritySettings.threshold,
        help="Robust z-score (median and MAD of the class's pairs) from which a pair's score stands out.",
    ).tag(config=True)
    min_similarity = Float(
        SimilaritySettings.min_similarity,
        help="Share (0-1) of both sides that must match, on top of standing out against the class.",
    ).tag(config=True)
    min_tokens = Int(
        SimilaritySettings.min_tokens,
        help="Matched normalised characters a single function or answer needs to be reported on its own.",
    ).tag(config=True)
    noise_threshold = Int(
        SimilaritySettings.noise_threshold,
        help="Shortest match (normalised characters) copydetect counts; the k of its k-grams.",
    ).tag(config=True)
    guarantee_threshold = Int(
        SimilaritySettings.guarantee_threshold,
        help="Matches at least this long (normalised characters) are always found (winnowing window).",
    ).tag(config=True)


def similarity_settings(config: Config) -> SimilaritySettings:
    """The ``TdkitSimilarity`` section of a course's config; an unknown key or a bad value is an error."""
    valid = sorted(TdkitSimilarity.class_trait_names(config=True))
    unknown = sorted(set(config.get("TdkitSimilarity", {})) - set(valid))
    if unknown:
        raise TdkitError(
            f"nbgrader_config.py: unknown c.TdkitSimilarity.{', c.TdkitSimilarity.'.join(unknown)}; "
            f"valid keys: {', '.join(valid)}."
        )
    section = TdkitSimilarity(config=config)
    settings = SimilaritySettings(**{name: getattr(section, name) for name in valid})
    if not 0 <= settings.min_similarity <= 1:
        raise TdkitError("nbgrader_config.py: c.TdkitSimilarity.min_similarity is a share, 0 to 1.")
    if not 0 < settings.noise_threshold <= settings.guarantee_threshold:
        raise TdkitError(
            "nbgrader_config.py: c.TdkitSimilarity needs 0 < noise_threshold <= guarantee_threshold."
        )
    return settings


# ---------------------------------------------------------------- what each student wrote


@dataclass(frozen=True)
class Unit:
    """One function, or one free-text answer, of one submission."""

    name: str  # the function's name, or the answer cell's grade_id
    kind: Kind
    text: str  # as shown on the page
    fingerprint: Any  # copydetect.CodeFingerprint: hashes left once the release's are removed

    @property
    def size(self) -> int:
        """Normalised characters covered by fingerprints of the student's own."""
        return int(self.fingerprint.token_coverage)


@dataclass(frozen=True)
class Release:
    """What every student received: the names to compare and the boilerplate to ignore."""

    functions: tuple[str, ...]  # functions defined in the solution cells, in notebook order
    answers: tuple[str, ...]  # grade_ids of the free-text answer cells
    code_boilerplate: np.ndarray  # fingerprints of every code cell of the release
    text_boilerplate: np.ndarray  # fingerprints of every Markdown cell of the release


def stable_hashed_kgrams(string: str, k: int) -> np.ndarray:
    """copydetect's ``hashed_kgrams`` with a hash that is the same in every process: copydetect
    uses Python's ``hash()``, salted per interpreter, so its winnowing kept other fingerprints,
    and gave other scores, at each run."""
    return np.array(
        [
            int.from_bytes(blake2b(string[i : i + k].encode(), digest_size=8).digest(), "little")
            - 2**63  # signed, as hash(): copydetect's winnowing compares them as numbers
            for i in range(len(string) - k + 1)
        ],
        dtype=np.int64,
    )


@contextmanager
def _stable_hashes() -> Iterator[None]:
    """copydetect fingerprints, every k-gram hashed by ``stable_hashed_kgrams``."""
    original = copydetect.utils.hashed_kgrams
    copydetect.utils.hashed_kgrams = stable_hashed_kgrams
    try:
        yield
    finally:
        copydetect.utils.hashed_kgrams = original


def _fingerprint(
    text: str, kind: Kind, settings: SimilaritySettings, boilerplate: Any, every: bool = False
) -> Any:
    """copydetect's fingerprint of ``text``; ``every``: all its k-grams, none winnowed away."""
    window = 1 if every else settings.guarantee_threshold - settings.noise_threshold + 1
    with _stable_hashes():
        if kind == "code":
            return CodeFingerprint(
                "unit.py",
                settings.noise_threshold,
                window,
                boilerplate=boilerplate,
                language="python",
                fp=io.StringIO(text),
            )
        # Free text: case does not hide a copy; lower() per character keeps the page's offsets.
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        return CodeFingerprint(
            "answer.txt",
            settings.noise_threshold,
            window,
            boilerplate=boilerplate,
            filter=False,
            fp=io.StringIO(lowered),
        )


def _prose(text: str) -> str:
    """A free-text answer with its white space collapsed: line breaks do not hide a copy."""
    return " ".join(text.split())


def _nbgrader(cell: NotebookNode) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _functions(source: str) -> dict[str, str]:
    """Top-level functions of a code cell, name -> source; {} when it does not parse."""
    lines = source.split("\n")
    try:
        tree = ast.parse("\n".join("" if MAGIC.match(line) else line for line in lines))
    except (SyntaxError, ValueError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[first - 1 : node.end_lineno])
    return found


def read_release(notebook: Path, settings: SimilaritySettings) -> Release:
    """The release notebook's solution functions and answer cells, and its fingerprints."""
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as error:
        raise TdkitError(f"{notebook} cannot be read ({error}): run 'tdkit release'.") from None
    functions: list[str] = []
    answers: list[str] = []
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if not meta.get("solution"):
            continue
        if cell.cell_type == "code":
            functions.extend(_functions(cell.source))
        elif cell.cell_type == "markdown" and isinstance(meta.get("grade_id"), str):
            answers.append(meta["grade_id"])
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    text = " ".join(_prose(c.source) for c in nb.cells if c.cell_type == "markdown")
    return Release(
        tuple(functions),
        tuple(answers),
        # Every k-gram of the release: winnowing picks by neighbourhood, so the release's own
        # selection would miss k-grams a student's copy of the same line selects.
        np.array(sorted(_fingerprint(code, "code", settings, None, every=True).hashes)),
        np.array(sorted(_fingerprint(text, "text", settings, None, every=True).hashes)),
    )


def student_units(
    nb: NotebookNode, release: Release, settings: SimilaritySettings
) -> dict[str, Unit]:
    """The student's own code of each function the release asks for (their last definition,
    wherever it is: cell metadata can be edited, a function's name is what the checks call) and
    their answers; a unit with nothing beyond the release is left out."""
    code: dict[str, str] = {}
    text: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            found = _functions(cell.source)
            code.update((name, found[name]) for name in release.functions if name in found)
        elif cell.cell_type == "markdown" and _nbgrader(cell).get("grade_id") in release.answers:
            text[_nbgrader(cell)["grade_id"]] = _prose(cell.source)
    units = [
        Unit(name, "code", source, _fingerprint(source, "code", settings, release.code_boilerplate))
        for name, source in code.items()
    ] + [
        Unit(name, "text", prose, _fingerprint(prose, "text", settings, release.text_boilerplate))
        for name, prose in text.items()
    ]
    return {u.name: u for u in units if u.size > 0}


# ---------------------------------------------------------------- comparing the class

_CLASS: dict[str, dict[str, Unit]] = {}  # the units a process compares (set before forking workers)


@dataclass
class UnitMatch:
    """One function (or answer) of one pair."""

    name: str
    kind: Kind
    score: float  # share matched, mean of both sides (0-1)
    matched: int  # normalised characters matched (the first student's side)
    z: float = 0.0  # robust z-score against the class's pairs for this unit
    flagged: bool = False


@dataclass
class PairScore:
    """One pair of students; ``code``/``text``: the size-weighted score over all their units."""

    a: str
    b: str
    units: dict[str, UnitMatch]
    code: float
    code_z: float = 0.0
    text: float = 0.0
    text_z: float = 0.0
    reasons: list[str] = field(default_factory=list)  # why reported (French, for the page)

    @property
    def reported(self) -> bool:
        return bool(self.reasons)

    @property
    def flagged(self) -> list[str]:
        """The functions and answers that stand out on their own."""
        return [name for name, match in self.units.items() if match.flagged]

    @property
    def strength(self) -> float:
        """What ranks the reported pairs: their largest z-score, overall or of a unit standing out."""
        flagged = [u.z for u in self.units.values() if u.flagged]
        return max([self.code_z, self.text_z, *flagged])


def _compare(a: Unit, b: Unit) -> UnitMatch:
    """copydetect's ``compare_files`` scores, without mapping the matches back to the raw text
    (a third of its time, and only the few pairs shown need it: ``side_by_side``)."""
    fa, fb = a.fingerprint, b.fingerprint
    if fa.hashes.isdisjoint(fb.hashes):
        return UnitMatch(a.name, a.kind, 0.0, 0)
    idx_a, idx_b = find_fingerprint_overlap(fa.hashes, fb.hashes, fa.hash_idx, fb.hash_idx)
    slices_a, slices_b = get_copied_slices(idx_a, fa.k), get_copied_slices(idx_b, fb.k)
    matched_a = int(np.sum(slices_a[1] - slices_a[0]))
    matched_b = int(np.sum(slices_b[1] - slices_b[0]))
    share = (matched_a / fa.token_coverage + matched_b / fb.token_coverage) / 2
    return UnitMatch(a.name, a.kind, float(share), matched_a)


def _weighted(units: Iterable[tuple[UnitMatch, Unit, Unit]]) -> float:
    """Score of several units at once: each weighs its size, so a 3-line function weighs little."""
    total = weight = 0.0
    for match, a, b in units:
        size = (a.size + b.size) / 2
        total += match.score * size
        weight += size
    return total / weight if weight else 0.0


def robust_z(values: Sequence[float]) -> list[float]:
    """(value - median) / (1.4826 MAD), the spread floored at ``SPREAD_FLOOR``."""
    if not values:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    spread = max(MAD_TO_SIGMA * mad, SPREAD_FLOOR)
    return [(v - median) / spread for v in values]


def _score_pair(a: str, b: str) -> PairScore:
    """The pair's units compared, from the units of the class the worker was forked with."""
    both = [(_CLASS[a][n], _CLASS[b][n]) for n in _CLASS[a] if n in _CLASS[b]]
    matches = {ua.name: _compare(ua, ub) for ua, ub in both}
    by_kind = {
        kind: [(matches[ua.name], ua, ub) for ua, ub in both if ua.kind == kind]
        for kind in ("code", "text")
    }
    return PairScore(
        a, b, matches, code=_weighted(by_kind["code"]), text=_weighted(by_kind["text"])
    )


def _score_chunk(chunk: Sequence[tuple[str, str]]) -> list[PairScore]:
    return [_score_pair(a, b) for a, b in chunk]


def _chunks(items: Sequence[T], n: int) -> list[Sequence[T]]:
    size = max(1, -(-len(items) // n))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pool(workers: int) -> Executor:
    """Processes forked from this one: they start with ``_CLASS`` in memory, nothing pickled."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def score_pairs(
    units: dict[str, dict[str, Unit]],
    same_group: set[frozenset[str]],
    settings: SimilaritySettings,
    workers: int = 1,
) -> list[PairScore]:
    """Every pair of students not in one group, scored per unit and overall, reasons set."""
    todo = [
        (a, b) for a, b in combinations(sorted(units), 2) if frozenset((a, b)) not in same_group
    ]
    global _CLASS
    _CLASS = units
    try:
        if workers > 1 and len(todo) > PAIRS_PER_WORKER:
            with _pool(workers) as pool:
                chunks = pool.map(_score_chunk, _chunks(todo, 8 * workers))
                pairs = [p for chunk in chunks for p in chunk]
        else:
            pairs = _score_chunk(todo)
    finally:
        _CLASS = {}
    for name in {n for p in pairs for n in p.units}:
        written = [p.units[name] for p in pairs if name in p.units]
        for match, z in zip(written, robust_z([m.score for m in written])):
            match.z = z
            match.flagged = (
                z >= settings.threshold
                and match.score >= settings.min_similarity
                and match.matched >= settings.min_tokens
            )
    for kind in ("code", "text"):
        having = [p for p in pairs if any(m.kind == kind for m in p.units.values())]
        scores = [p.code if kind == "code" else p.text for p in having]
        for pair, z, score in zip(having, robust_z(scores), scores):
            if kind == "code":
                pair.code_z = z
            else:
                pair.text_z = z
            if z >= settings.threshold and score >= settings.min_similarity:
                what = (
                    "le code, toutes fonctions"
                    if kind == "code"
                    else "les réponses rédigées, toutes"
                )
                pair.reasons.append(f"{what} confondues : {score:.0%} (z = {z:.1f})")
    for pair in pairs:
        pair.reasons.extend(
            f"{m.name} : {m.score:.0%} (z = {m.z:.1f})" for m in pair.units.values() if m.flagged
        )
    return pairs


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class SimilarityResult:
    assignment: str
    students: tuple[str, ...]  # compared
    unreadable: dict[str, str]  # student id -> why the notebook was not read
    pairs: list[PairScore]  # every pair compared (group members never are)
    reported: list[PairScore]  # the pairs worth a look, strongest first
    settings: SimilaritySettings
    html: Path
    csv: Path
    seconds: float


def _read_student(
    course: Course,
    release: Release,
    settings: SimilaritySettings,
    max_bytes: int,
    max_cells: int,
    sids: Sequence[str],
) -> dict[str, dict[str, Unit] | str]:
    """Each student's units, or why their notebook was not read."""
    found: dict[str, dict[str, Unit] | str] = {}
    for sid in sids:
        try:
            nb = read_submission(course, sid, max_bytes, max_cells)
        except UnreadableSubmission as error:
            found[sid] = str(error)
            continue
        found[sid] = student_units(nb, release, settings)
    return found


def similarity(course: Course, workers: int | None = None) -> SimilarityResult:
    """Compare every pair of submissions of the course's assignment and write
    ``reports/<assignment>/similarity.html`` and ``similarity.csv``; ``workers`` processes
    (default: one per core this process may use)."""
    if workers is None:  # the cores this process may use (sched_getaffinity is Linux's)
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        workers = len(usable) if usable else os.cpu_count() or 1
    start = time.perf_counter()
    config = course.nbgrader_config()
    settings = similarity_settings(config)
    limits = limits_from_config(config)
    if not course.release_notebook.is_file():
        raise TdkitError(
            f"{course.release_notebook} does not exist: run 'tdkit release' (the release is the "
            "boilerplate the comparison leaves out)."
        )
    release = read_release(course.release_notebook, settings)
    folders = sorted(course.submitted.iterdir()) if course.submitted.is_dir() else []
    sids = [f.name for f in folders if course.submitted_notebook(f.name).exists()]
    read = partial(
        _read_student, course, release, settings, limits.max_notebook_bytes, limits.max_cells
    )
    if workers > 1 and len(sids) > STUDENTS_PER_WORKER:
        with _pool(workers) as pool:
            found = list(pool.map(read, _chunks(sids, 4 * workers)))
    else:
        found = [read(sids)]
    units = {sid: u for chunk in found for sid, u in chunk.items() if not isinstance(u, str)}
    unreadable = {sid: u for chunk in found for sid, u in chunk.items() if isinstance(u, str)}
    same_group = {
        frozenset(pair) for g in load_roster(course).groups for pair in combinations(g.members, 2)
    }
    pairs = score_pairs(units, same_group, settings, workers)
    reported = sorted((p for p in pairs if p.reported), key=lambda p: (-p.strength, p.a, p.b))
    html, table = course.reports / "similarity.html", course.reports / "similarity.csv"
    names = [*release.functions, *release.answers]
    write_atomically(table, pairs_csv(pairs, names))
    result = SimilarityResult(
        course.assignment,
        tuple(units),
        unreadable,
        pairs,
        reported,
        settings,
        html,
        table,
        time.perf_counter() - start,
    )
    write_atomically(html, render_similarity(result, units, names))
    return result


def pairs_csv(pairs: Sequence[PairScore], names: Sequence[str]) -> str:
    """One row per pair compared: overall scores and z-scores, then each unit's score."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["student_a", "student_b", "reported", "code", "code_z", "text", "text_z", *names]
    )
    for p in sorted(pairs, key=lambda p: (not p.reported, -p.code, p.a, p.b)):
        overall = [f"{p.code:.3f}", f"{p.code_z:.2f}", f"{p.text:.3f}", f"{p.text_z:.2f}"]
        units = [f"{p.units[n].score:.3f}" if n in p.units else "" for n in names]
        writer.writerow([p.a, p.b, int(p.reported), *overall, *units])
    return out.getvalue()


# ---------------------------------------------------------------- the page


@dataclass(frozen=True)
class SideBySide:
    name: str
    kind: Kind
    score: float
    z: float
    flagged: bool
    left: Markup  # the first student's text, escaped, matches in <mark>
    right: Markup


def _highlighted(text: str, slices: np.ndarray) -> Markup:
    """``text`` escaped, each matched range in <mark>: the marks are the only tags."""
    if slices.size == 0:
        return Markup(escape(text))
    marked, _ = highlight_overlap(text, slices, "<mark>", "</mark>", escape_html=True)
    return Markup(marked)


def side_by_side(pair: PairScore, units: dict[str, dict[str, Unit]]) -> list[SideBySide]:
    """The units of a pair that share anything, the flagged ones first, matches marked."""
    shown = sorted(
        (m for m in pair.units.values() if m.matched > 0), key=lambda m: (not m.flagged, -m.score)
    )
    views = []
    for m in shown:
        left, right = units[pair.a][m.name], units[pair.b][m.name]
        # Where the matches are: asked again for the few pairs shown, not kept for every pair.
        _, _, (slices_left, slices_right) = compare_files(left.fingerprint, right.fingerprint)
        views.append(
            SideBySide(
                m.name,
                m.kind,
                m.score,
                m.z,
                m.flagged,
                _highlighted(left.text, slices_left),
                _highlighted(right.text, slices_right),
            )
        )
    return views


def render_similarity(
    result: SimilarityResult, units: dict[str, dict[str, Unit]], names: Sequence[str]
) -> str:
    # The feedback pages' environment: autoescaped, StrictUndefined, the same filters.
    from tdkit.reports.html import environment

    medians = {
        name: statistics.median(scores)
        for name in names
        if (scores := [p.units[name].score for p in result.pairs if name in p.units])
    }
    return (
        environment()
        .get_template("similarity.html")
        .render(
            assignment=result.assignment,
            result=result,
            names=names,
            medians=medians,
            details=[(p, side_by_side(p, units)) for p in result.reported[:SHOWN]],
        )
    )
