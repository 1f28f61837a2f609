"""Feedback pages of a grading run: one self-contained HTML page per student, and the class summary.

Pages come from the packaged Jinja templates (``tdkit/reports/templates``), autoescaped: messages,
tracebacks and ids are untrusted text. Plots are drawn with matplotlib's Agg canvas on bare
``Figure`` objects (never pyplot, so no figure outlives its rendering) and embedded as
``data:image/png;base64`` URIs, so each page is one file a student can open offline.
All text of the pages is French, the course language.
"""

from __future__ import annotations

import base64
import io
import re
import statistics
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from tdkit.core.assignment import Assignment, CheckGroup, CurveFigure, MatrixFigure
from tdkit.reports.results import (
    AssignmentResults,
    CheckResult,
    StudentResult,
    hand_grading_queue,
)
from tdkit.untrusted.execute import strip_ansi
from tdkit.untrusted.import_guard import missing_module_note

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn: an unchanged class draws none
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 96  # small PNGs: a page stays light and 100 students render in seconds
PNG_OPTIONS = {"compress_level": 1}  # fast zlib: encoding, not size, is what costs here
MAX_MATRIX_SIDE = 60  # a larger "confusion matrix" is described, not drawn
TRACEBACK_HEAD, TRACEBACK_TAIL = 40, 80  # lines kept from a very long traceback
SLOWEST = 5

_CODE_SPAN = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class ReportFiles:
    summary: Path  # out_dir/index.html
    students: dict[str, Path]  # student_id -> out_dir/<student_id>.html


# ---------------------------------------------------------------- text helpers (Jinja filters)


def format_message(text: str) -> Markup:
    """Escape ``text``, then render `code` spans as <code> and newlines as <br>."""
    escaped = str(escape(text))  # no '<' survives, so the tags added below are the only tags
    with_code = _CODE_SPAN.sub(r"<code>\1</code>", escaped)
    return Markup(with_code.replace("\r\n", "\n").replace("\n", "<br>\n"))


def format_number(value: float) -> str:
    """French decimals: 12.5 -> '12,5', 3.0 -> '3'."""
    return f"{value:.4g}".replace(".", ",") if abs(value) < 1e4 else f"{value:.0f}"


def format_delay(seconds: float) -> str:
    """A delay in French: '1 j 2 h 5 min'."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} j"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return " ".join(parts)


def format_percent(share: float) -> str:
    return f"{share * 100:.0f}\u202f%"


def _shorten_traceback(text: str) -> str:
    lines = strip_ansi(text).splitlines()
    if len(lines) <= TRACEBACK_HEAD + TRACEBACK_TAIL:
        return "\n".join(lines)
    cut = len(lines) - TRACEBACK_HEAD - TRACEBACK_TAIL
    return "\n".join(
        [*lines[:TRACEBACK_HEAD], f"[… {cut} lignes coupées …]", *lines[-TRACEBACK_TAIL:]]
    )


# ---------------------------------------------------------------- plots


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, pil_kwargs=PNG_OPTIONS)
    return buffer.getvalue()


def _as_curve(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    try:
        curve = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    return curve if curve.ndim == 1 and np.isfinite(curve).any() else None


def _as_matrix(values: Any, expected: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The 2-D array to draw, or None and why not."""
    if values is None:
        return None, "matrice indisponible (aucune valeur enregistrée)"
    try:
        matrix = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None, "matrice indisponible : ce n'est pas un tableau de nombres"
    if matrix.ndim != 2 or 0 in matrix.shape:
        return None, f"matrice indisponible : tableau de forme {matrix.shape}, pas 2-D"
    if max(matrix.shape) > MAX_MATRIX_SIDE:
        return (
            None,
            f"matrice de forme {matrix.shape}, trop grande pour être dessinée (attendu {expected})",
        )
    return matrix, ""


def _fixed_labels(axes: Axes, xlabel: str, ylabel: str) -> None:
    """Axis labels at fixed places: placing them from the tick labels' sizes costs a layout per draw."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.xaxis.set_label_coords(0.5, -0.13)
    axes.yaxis.set_label_coords(-0.09, 0.5)


def _tick_labels(n: int, names: Sequence[str]) -> list[str]:
    return list(names) if n == len(names) else [str(i) for i in range(n)]


class _HeatmapCanvas:
    """A matrix plot of one shape and labels whose axes are drawn once; each matrix is blitted on it.

    Tick labels dominate the cost of a fresh figure: redrawing only the image and the title makes
    a heatmap about ten times cheaper, which is what keeps a class of 100 students fast.
    """

    def __init__(self, shape: tuple[int, int], spec: MatrixFigure) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows, cols = shape
        self.figure = Figure(figsize=(4.6, 4.6), dpi=DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes((0.22, 0.23, 0.74, 0.70))
        self.image = self.axes.imshow(
            np.zeros(shape), cmap="Blues", aspect="auto", interpolation="nearest", animated=True
        )
        self.title = self.axes.set_title(" ", fontsize=10)
        self.title.set_animated(True)
        self.axes.set_xlabel(spec.xlabel, fontsize=9)
        self.axes.set_ylabel(spec.ylabel, fontsize=9)
        if cols <= 20:  # beyond, matplotlib's own ticks stay readable
            names = cols == len(spec.ticks)
            self.axes.set_xticks(
                range(cols),
                _tick_labels(cols, spec.ticks),
                fontsize=8,
                rotation=60 if names else 0,
                ha="right" if names else "center",
            )
        if rows <= 20:
            self.axes.set_yticks(range(rows), _tick_labels(rows, spec.ticks), fontsize=8)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)

    def png(self, matrix: np.ndarray, title: str) -> bytes:
        self.canvas.restore_region(self.background)
        finite = matrix[np.isfinite(matrix)]
        self.image.set_data(matrix)
        self.image.set_clim(
            min(0.0, finite.min()) if finite.size else 0.0, finite.max() if finite.size else 1.0
        )
        self.title.set_text(title)
        for artist in (self.image, self.title, *self.axes.spines.values()):
            self.axes.draw_artist(artist)
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())[..., :3]).save(
            buffer, "png", **PNG_OPTIONS
        )
        return buffer.getvalue()


class _CurveCanvas:
    """A curve plot (the student's beside the reference's), drawn again for each student."""

    def __init__(self, spec: CurveFigure, function: str) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.figure = Figure(figsize=(6.0, 3.4), dpi=DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes((0.11, 0.16, 0.86, 0.72))
        (self.reference,) = self.axes.plot(
            [], [], "--o", color="#7a7a7a", markersize=3, label="référence"
        )
        (self.student,) = self.axes.plot(
            [], [], "-o", color="#1f5fbf", markersize=3, label=f"votre {function}"
        )
        _fixed_labels(self.axes, spec.xlabel, spec.ylabel)
        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, steps
        self.axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
        self.axes.grid(alpha=0.3)

    def png(self, student: np.ndarray | None, reference: np.ndarray | None) -> bytes:
        drawn = []
        for line, curve in ((self.reference, reference), (self.student, student)):
            line.set_visible(curve is not None)
            if curve is not None:
                line.set_data(np.arange(1, curve.size + 1), curve)
                line.set_marker("o" if curve.size <= 50 else "")  # a value per sample is a line
                drawn.append(line)
        finite = np.concatenate([c[np.isfinite(c)] for c in (student, reference) if c is not None])
        # A diverging loss would flatten the reference to a line.
        log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 50
        scale = "log" if log else "linear"
        if self.axes.get_yscale() != scale:
            self.axes.set_yscale(scale)  # resets the locator
            if scale == "linear":
                from matplotlib.ticker import MaxNLocator

                self.axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
        self.axes.relim(visible_only=True)
        self.axes.autoscale_view()
        # Above the axes: never on top of a curve.
        self.axes.legend(
            handles=drawn,
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=2,
            fontsize=9,
            frameon=False,
        )
        buffer = io.BytesIO()
        self.canvas.print_png(buffer, pil_kwargs=PNG_OPTIONS)
        return buffer.getvalue()


class Plotter:
    """The plots of one report run; reuses its canvases, and draws what every student shares once."""

    def __init__(self) -> None:
        self._curves: dict[tuple[CurveFigure, str], _CurveCanvas] = {}
        self._heatmaps: dict[tuple[tuple[int, int], MatrixFigure], _HeatmapCanvas] = {}
        self._shared: dict[bytes, str] = {}

    def curve(
        self,
        spec: CurveFigure,
        function: str,
        student: np.ndarray | None,
        reference: np.ndarray | None,
    ) -> str:
        if (spec, function) not in self._curves:
            self._curves[spec, function] = _CurveCanvas(spec, function)
        return _png_data_uri(self._curves[spec, function].png(student, reference))

    def matrix(self, spec: MatrixFigure, matrix: np.ndarray, title: str) -> str:
        shape = (matrix.shape[0], matrix.shape[1])
        if (shape, spec) not in self._heatmaps:
            self._heatmaps[shape, spec] = _HeatmapCanvas(shape, spec)
        return _png_data_uri(self._heatmaps[shape, spec].png(matrix, title))

    def shared_matrix(self, spec: MatrixFigure, matrix: np.ndarray, title: str) -> str:
        """The reference matrix: the same for every student of a run, so drawn once."""
        key = f"{spec.name}{matrix.shape}{title}".encode() + matrix.tobytes()
        if key not in self._shared:
            self._shared[key] = self.matrix(spec, matrix, title)
        return self._shared[key]


def score_histogram_png(scores: list[float], max_score: float) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    width = 1.0 if max_score <= 40 else max_score / 20
    edges = np.arange(0, np.ceil(max(max_score, max(scores)) / width) + 1) * width
    fig = Figure(figsize=(6.0, 3.0), dpi=DPI)
    ax = fig.add_axes((0.1, 0.17, 0.87, 0.74))
    ax.hist(scores, bins=list(edges), color="#4a6fa5", edgecolor="white")
    ax.axvline(statistics.fmean(scores), color="#c62828", linestyle="--", label="moyenne")
    _fixed_labels(ax, f"score (sur {format_number(max_score)})", "nombre de copies")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=9)
    return _png_data_uri(_figure_png(fig))


# ---------------------------------------------------------------- views (plain data for templates)


@dataclass(frozen=True)
class GroupView:
    name: str
    label: str
    checks: list[CheckResult]  # failed first

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def n_failed(self) -> int:
        return sum(not c.passed for c in self.checks)


@dataclass(frozen=True)
class Plot:
    uri: str | None  # data:image/png;base64,... or None when there is nothing to draw
    caption: str  # under the image, or in its place; may hold `code`


@dataclass(frozen=True)
class FigureView:
    heading: str  # French, above the plots
    plots: list[Plot]  # one curve plot, or the student's matrix then the reference's
    note: str = ""  # under the heading (how to read the plots)


def group_checks(checks: list[CheckResult], groups: Sequence[CheckGroup]) -> list[GroupView]:
    by_group: dict[str, list[CheckResult]] = {}
    for result in checks:
        by_group.setdefault(result.group, []).append(result)
    labels = {group.name: group.label for group in groups}
    # The notebook's order; groups the assignment does not name follow, sorted.
    order = [g for g in labels if g in by_group] + sorted(set(by_group) - set(labels))
    # sorted() is stable: failed checks first, each part in the order the checks ran.
    return [
        GroupView(g, labels.get(g, ""), sorted(by_group[g], key=lambda c: c.passed)) for g in order
    ]


def _value_range(matrix: np.ndarray) -> str:
    finite = matrix[np.isfinite(matrix)]
    if not finite.size:
        return "aucune valeur finie"
    return f"couleur : de {format_number(min(0.0, finite.min()))} (blanc) à {format_number(finite.max())}"


def _curve_view(
    spec: CurveFigure, function: str, views: Mapping[str, Any], plotter: Plotter
) -> FigureView:
    mine, reference = (_as_curve(views.get(who)) for who in ("student", "reference"))
    if mine is None and reference is None:
        plot = Plot(
            None, f"Courbe indisponible : ni votre `{function}` ni la référence n'en donnent."
        )
    else:
        if mine is None:
            caption = (
                f"Courbe indisponible pour votre `{function}` (pas de liste de nombres exploitable) : "
                "seule la référence est tracée."
            )
        elif reference is None:
            caption = "Courbe de référence indisponible : seule la vôtre est tracée."
        else:
            caption = spec.caption
        plot = Plot(plotter.curve(spec, function, mine, reference), caption)
    return FigureView(spec.heading, [plot])


def _matrix_view(
    spec: MatrixFigure, function: str, views: Mapping[str, Any], plotter: Plotter
) -> FigureView:
    plots = []
    expected = f"{spec.shape[0]}×{spec.shape[1]}"
    for who, title, caption in (
        ("student", "Votre matrice", f"Votre `{function}`"),
        ("reference", "Matrice de référence", spec.reference_caption),
    ):
        matrix, why_not = _as_matrix(views.get(who), spec.shape)
        if matrix is None:
            plots.append(Plot(None, f"{caption} : {why_not}."))
            continue
        rows, cols = matrix.shape
        shape = f"{rows}×{cols}" + ("" if (rows, cols) == spec.shape else f" au lieu de {expected}")
        draw = plotter.shared_matrix if who == "reference" else plotter.matrix
        uri = draw(spec, matrix, f"{title}, {shape}")
        plots.append(Plot(uri, f"{caption}, {shape} ({_value_range(matrix)})."))
    note = f"Lignes : {spec.ylabel} ; colonnes : {spec.xlabel}."
    return FigureView(spec.heading, plots, note)


def _figures(student: StudentResult, definition: Assignment, plotter: Plotter) -> list[FigureView]:
    """The assignment's figures (``Assignment.figures``), each the student's beside the reference's."""
    views = []
    for spec in definition.figures:
        group = definition.group(spec.group)
        function = group.function if group is not None else spec.group
        values = student.figures.get(spec.name) or {}
        if isinstance(spec, CurveFigure):
            views.append(_curve_view(spec, function, values, plotter))
        else:
            views.append(_matrix_view(spec, function, values, plotter))
    return views


def page_name(student_id: str) -> str:
    if student_id in {"", ".", "..", "index"} or any(c in student_id for c in "/\\\0"):
        raise ValueError(f"student id {student_id!r} cannot name a file of the report")
    return f"{student_id}.html"


# ---------------------------------------------------------------- rendering


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tdkit.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        message=format_message,
        num=format_number,
        percent=format_percent,
        traceback=_shorten_traceback,
    )
    return env


def render_student(
    student: StudentResult,
    assignment: str,
    definition: Assignment,
    plotter: Plotter | None = None,
    summary_href: str | None = "index.html",
    packages: Sequence[str] = (),
) -> str:
    """The HTML page of one student; pass one ``plotter`` to all the students of a run, and the
    course environment's ``packages`` for the note on modules outside it.
    ``summary_href=None``: no link to the class summary (the page is sent on its own)."""
    groups = group_checks(student.checks, definition.groups)
    return (
        environment()
        .get_template("student.html")
        .render(
            assignment=assignment,
            title=definition.title,
            student=student,
            groups=groups,
            n_failed=sum(g.n_failed for g in groups),
            share=student.final_score / student.maximum if student.maximum else 0.0,
            auto_max=student.maximum - student.hand_maximum,
            comment_cells=[c for c in student.cells if c.kind == "comment"],
            figures=_figures(student, definition, plotter or Plotter()),
            summary_href=summary_href,
            delay=format_delay(student.seconds_late),
            environment_notes=[missing_module_note(m, packages) for m in student.missing_modules],
        )
    )


@dataclass(frozen=True)
class FailedCheck:
    check_id: str
    count: int
    share: float
    example: (
        str  # the most frequent message of this check, from a notebook judged function by function
    )


def frequent_failures(results: AssignmentResults) -> list[FailedCheck]:
    messages: dict[str, Counter[str]] = {}
    judged: dict[
        str, Counter[str]
    ] = {}  # notebooks with no notice at the top: their messages stand alone
    for student in results.students.values():
        for result in student.checks:
            if not result.passed:
                messages.setdefault(result.check_id, Counter())[result.message] += 1
                if not (student.refused or student.notice):
                    judged.setdefault(result.check_id, Counter())[result.message] += 1
    n = len(results.students)
    rows = [
        FailedCheck(
            cid, sum(c.values()), sum(c.values()) / n, (judged.get(cid) or c).most_common(1)[0][0]
        )
        for cid, c in messages.items()
    ]
    return sorted(rows, key=lambda r: (-r.count, r.check_id))


@dataclass(frozen=True)
class MissingModule:
    module: str
    students: list[str]  # the copies that import it


def missing_modules(results: AssignmentResults) -> list[MissingModule]:
    """Each module imported from outside the course environment, with its copies, most frequent first."""
    by_module: dict[str, list[str]] = {}
    for sid in sorted(results.students):
        for module in results.students[sid].missing_modules:
            by_module.setdefault(module, []).append(sid)
    return [
        MissingModule(m, s)
        for m, s in sorted(by_module.items(), key=lambda item: (-len(item[1]), item[0]))
    ]


def render_summary(results: AssignmentResults, definition: Assignment) -> str:
    students = [results.students[sid] for sid in sorted(results.students)]
    # The course's grades, of the copies whose every answer is graded: no grade is guessed.
    scores = [s.final_score for s in students if not s.waiting_for]
    max_score = Counter(s.maximum for s in students).most_common(1)[0][0] if students else 0.0
    return (
        environment()
        .get_template("summary.html")
        .render(
            assignment=results.assignment,
            title=definition.title,
            students=students,
            href={s.student_id: quote(page_name(s.student_id)) for s in students},
            n_failed={s.student_id: sum(not c.passed for c in s.checks) for s in students},
            queue=hand_grading_queue(results),
            n_pending=sum(bool(s.pending) for s in students),
            mean=statistics.fmean(scores) if scores else None,
            median=statistics.median(scores) if scores else None,
            max_score=max_score,
            histogram=score_histogram_png(scores, max_score) if scores else None,
            failures=frequent_failures(results),
            slowest=sorted(students, key=lambda s: -s.seconds)[:SLOWEST],
            crashed=[s for s in students if s.failure is not None],
            late=[(s, format_delay(s.seconds_late)) for s in students if s.seconds_late > 0],
            without_timestamp=results.without_timestamp,
            conflicts=results.conflicts,
            missing=missing_modules(results),
            n_missing=sum(bool(s.missing_modules) for s in students),
            packages=results.environment,
        )
    )


def render_reports(
    results: AssignmentResults,
    definition: Assignment,
    out_dir: Path,
    only: Collection[str] | None = None,
    *,
    summary: bool = True,
) -> ReportFiles:
    """Write ``out_dir/<student_id>.html`` for every student and ``out_dir/index.html``.

    ``only``: rewrite just these students' pages (and any page missing); the others are unchanged.
    ``summary=False``: keep ``index.html`` as it is (when the results are those it was drawn from).
    """
    names = {sid: page_name(sid) for sid in results.students}  # refuse a bad id before writing
    out_dir.mkdir(parents=True, exist_ok=True)
    plotter = Plotter()  # draws nothing until a page is rendered
    pages = {}
    for sid in sorted(results.students):
        pages[sid] = out_dir / names[sid]
        if only is not None and sid not in only and pages[sid].is_file():
            continue
        pages[sid].write_text(
            render_student(
                results.students[sid],
                results.assignment,
                definition,
                plotter,
                packages=results.environment,
            ),
            encoding="utf-8",
        )
    index = out_dir / "index.html"
    if summary or not index.is_file():
        index.write_text(render_summary(results, definition), encoding="utf-8")
    return ReportFiles(index, pages)
