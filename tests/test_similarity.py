"""tdkit similarity: the labelled pairs of tests/files/similarity/ come out as labelled.

The fixtures are the release notebook with its solution regions filled, one notebook a student:
ana, bruno, camille, dimitri, elsa and fatou each wrote their own solutions (several styles of
each function), except fatou's ``train``, copied from dimitri with every name changed and the
comments and prints reworded; gilles handed in ana's notebook as it is; hugo, bruno's with every
name changed, comments added and the layout changed; iris, camille's with independent statements
swapped; jules, elsa's, and they are a binôme. No notebook is executed.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import copy_course, td_cnn
from traitlets.config import Config

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.intake.roster import Group, Roster, save_roster
from tdkit.reports.similarity import (
    PairScore,
    SimilarityResult,
    SimilaritySettings,
    read_release,
    score_pairs,
    side_by_side,
    similarity,
    similarity_settings,
    student_units,
)

FIXTURES = Path(__file__).parent / "files" / "similarity"
INDEPENDENT = ("ana", "bruno", "camille", "dimitri", "elsa", "fatou")
COPIES = {
    ("ana", "gilles"): "identical",
    ("bruno", "hugo"): "renamed variables",
    ("camille", "iris"): "reordered independent statements",
    ("dimitri", "fatou"): "one copied function",
}


def submit(course: Course, student_id: str, notebook: Path) -> None:
    folder = course.submitted_notebook(student_id).parent
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, folder / notebook.name.replace(notebook.stem, course.assignment))


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Course:
    course = Course(copy_course(tmp_path_factory.mktemp("similarity")))
    for notebook in sorted(FIXTURES.glob("*.ipynb")):
        submit(course, notebook.stem, notebook)
    save_roster(course, Roster(groups=[Group("binôme 7", ("elsa", "jules"), "elsa")]), None)
    return course


@pytest.fixture(scope="module")
def result(course: Course) -> SimilarityResult:
    return similarity(course)


def pair(result: SimilarityResult, a: str, b: str) -> PairScore:
    return next(p for p in result.pairs if (p.a, p.b) == (a, b))


def test_the_labelled_copies_and_only_them_are_reported(result: SimilarityResult) -> None:
    """Are exactly the identical, renamed, reordered and one-function copies reported?"""
    assert {(p.a, p.b) for p in result.reported} == set(COPIES)


def test_independent_correct_solutions_are_not_reported(result: SimilarityResult) -> None:
    """Do independent correct solutions, alike as short functions are, stay unreported?"""
    independent = [
        p
        for p in result.pairs
        if p.a in INDEPENDENT and p.b in INDEPENDENT and (p.a, p.b) not in COPIES
    ]
    assert len(independent) == 14
    assert not [p for p in independent if p.reported]
    # They do share fragments (e.g. the same two-line accuracy): what stands out is what counts.
    assert any(m.score > 0.5 for p in independent for m in p.units.values())


def test_a_copied_function_stands_out_among_independent_work(result: SimilarityResult) -> None:
    """Is the one copied function of fatou reported on its own, and nothing else of hers?"""
    copied = pair(result, "dimitri", "fatou")
    assert copied.flagged == ["train"]
    assert copied.units["train"].score > 0.9


def test_renaming_and_reordering_do_not_hide_a_copy(result: SimilarityResult) -> None:
    """Do names, comments, layout and swapped statements leave the scores high?"""
    assert pair(result, "bruno", "hugo").code > 0.95
    reordered = pair(result, "camille", "iris")
    assert reordered.code > 0.8
    assert "train" in reordered.flagged


def test_a_binome_is_not_compared(result: SimilarityResult) -> None:
    """Are the two members of a group never compared, so never reported?"""
    assert not [p for p in result.pairs if {p.a, p.b} == {"elsa", "jules"}]
    assert len(result.pairs) == 10 * 9 // 2 - 1


def test_what_the_release_gives_is_boilerplate(course: Course) -> None:
    """Does the release handed in unchanged (buggy loop, stubs, statement) count as nothing written?"""
    settings = SimilaritySettings()
    release = read_release(course.release_notebook, settings)
    assert release.functions == (
        "train",
        "plot_learning_curve",
        "predict",
        "accuracy",
        "confusion_matrix",
        "per_class_accuracy",
        "train_minibatch",
        "activation_maps",
    )
    assert release.answers == ("answer_examples", "answer_accuracy", "answer_bricolage")
    untouched = nbformat.read(course.release_notebook, as_version=4)
    assert student_units(untouched, release, settings) == {}


def test_student_text_is_inert_and_matches_are_marked(course: Course) -> None:
    """Is a student's text escaped on the page, the matched fragments in <mark>?"""
    settings = SimilaritySettings()
    release = read_release(course.release_notebook, settings)
    units = {}
    for sid in ("ana", "gilles"):
        nb = nbformat.read(FIXTURES / "ana.ipynb", as_version=4)
        answer = next(
            c
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_accuracy"
        )
        answer.source += " <script>alert('x')</script> & <img src=x onerror=alert(1)>"
        units[sid] = student_units(nb, release, settings)
    (scored,) = score_pairs(units, set(), settings)
    shown = {s.name: s for s in side_by_side(scored, units)}
    text = str(shown["answer_accuracy"].left)
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;" in text and "<mark>" in text
    assert "<mark>" in str(shown["train"].right)


def test_page_and_csv(result: SimilarityResult, course: Course) -> None:
    """Do the page and the CSV sit in reports/<assignment>/, the page ranking the reported pairs?"""
    assert result.html == course.root / "reports" / "td_cnn" / "similarity.html"
    page = result.html.read_text(encoding="utf-8")
    assert page.count('class="pair"') == len(COPIES)
    assert "similarity.csv" in page and "<mark>" in page
    with open(result.csv, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(result.pairs)
    assert {(r["student_a"], r["student_b"]) for r in rows if r["reported"] == "1"} == set(COPIES)
    assert rows[0]["train"] and float(rows[0]["code"]) > 0.8


def test_the_class_summary_links_to_the_page() -> None:
    """Does the class summary (a TA page) link to similarity.html?"""
    from tdkit.reports.html import render_summary
    from tdkit.reports.results import AssignmentResults

    assert 'href="../similarity.html"' in render_summary(AssignmentResults("td_cnn"), td_cnn())


def test_settings_come_from_nbgrader_config() -> None:
    """Is c.TdkitSimilarity typed, with an unknown key an error naming the valid ones?"""
    config = Config()
    config.TdkitSimilarity.threshold = 5.0
    assert similarity_settings(config).threshold == 5.0
    config.TdkitSimilarity.treshold = 2.0
    with pytest.raises(
        TdkitError, match="unknown c.TdkitSimilarity.treshold; valid keys: .*threshold"
    ):
        similarity_settings(config)


def test_the_course_threshold_decides(course: Course) -> None:
    """Does c.TdkitSimilarity.threshold in the course's nbgrader_config.py decide what is reported?"""
    config = course.root / "nbgrader_config.py"
    original = config.read_text(encoding="utf-8")
    try:
        config.write_text(original + "\nc.TdkitSimilarity.threshold = 100.0\n", encoding="utf-8")
        stricter = similarity(course)
    finally:
        config.write_text(original, encoding="utf-8")
    assert stricter.settings.threshold == 100.0 and not stricter.reported


def test_cli_verb(course: Course, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does `tdkit similarity` name the reported pairs and the page, in seconds?"""
    from tdkit.cli import main

    monkeypatch.chdir(course.root)
    start = time.perf_counter()
    run = CliRunner().invoke(main, ["similarity", "td_cnn"])
    assert run.exit_code == 0, run.output
    assert time.perf_counter() - start < 10
    assert "reported: dimitri / fatou:" in run.output and "standing out: train" in run.output
    assert "4 pair(s) reported" in run.output
    assert CliRunner().invoke(main, ["similarity", "td_nothing"]).exit_code == 2


def test_forked_workers_give_the_same_scores(tmp_path: Path) -> None:
    """Do the fingerprints and pairs computed in forked workers match those of one process?"""
    course = Course(copy_course(tmp_path / "course"))
    for notebook in sorted(FIXTURES.glob("*.ipynb")):
        for n in range(2):
            submit(course, f"{notebook.stem}{n}", notebook)

    def scores(result: SimilarityResult) -> dict[tuple[str, str], list[float]]:
        return {
            (p.a, p.b): [p.code, p.text, *(m.score for m in p.units.values())] for p in result.pairs
        }

    alone, forked = similarity(course, workers=1), similarity(course, workers=2)
    assert len(alone.pairs) == 20 * 19 // 2
    assert scores(forked) == scores(alone)
    assert [(p.a, p.b) for p in forked.reported] == [(p.a, p.b) for p in alone.reported]


def test_scores_are_the_same_at_every_run(tmp_path: Path) -> None:
    """Do two runs give the same table (copydetect hashes k-grams with hash(), salted per process)?"""
    runs = []
    for seed in ("1", "2"):
        course = Course(copy_course(tmp_path / seed))
        for name in ("ana", "camille", "iris", "dimitri", "fatou"):
            submit(course, name, FIXTURES / f"{name}.ipynb")
        command = [sys.executable, "-c", "from tdkit.cli import main; main()", "similarity"]
        env = {**os.environ, "PYTHONHASHSEED": seed}
        runs.append((course, subprocess.Popen(command, cwd=course.root, env=env)))
    tables = []
    for course, run in runs:
        assert run.wait(timeout=120) == 0
        tables.append((course.reports / "similarity.csv").read_text(encoding="utf-8"))
    assert tables[0] == tables[1]
    assert "camille,iris,1," in tables[0]


def test_a_solution_shared_by_the_class_is_said(tmp_path: Path) -> None:
    """When most of the class hands in the same code, does the page say so rather than stay silent?"""
    course = Course(copy_course(tmp_path / "course"))
    for n in range(4):
        submit(course, f"copie{n}", FIXTURES / "ana.ipynb")
    submit(course, "autre", FIXTURES / "bruno.ipynb")
    result = similarity(course)
    assert not result.reported  # nothing stands out from a class that all hands in one solution
    assert "la plupart des copies ont ce même code" in result.html.read_text(encoding="utf-8")


def test_the_page_is_inert_in_a_browser(tmp_path: Path) -> None:
    """In Chromium, does the page run none of a student's markup and request nothing, even with
    every payload of the hostile notebook's answers shown side by side?"""
    from hostile import hostile_markup
    from markup_watch import active_markup, assert_inert, payload_listener, watch
    from servers import chromium

    course = Course(copy_course(tmp_path / "course"))
    hostile = tmp_path / "hostile.ipynb"
    nbformat.write(hostile_markup(payload_listener().url), hostile)
    for sid in ("copie1", "copie2"):
        submit(course, sid, hostile)
    submit(course, "ana", FIXTURES / "ana.ipynb")
    submit(course, "bruno", FIXTURES / "bruno.ipynb")
    result = similarity(course)
    shown = [sorted((p.a, p.b)) for p in result.reported]
    assert ["copie1", "copie2"] in shown
    with chromium() as context:
        page = context.new_page()
        seen = watch(page)
        page.goto(result.html.as_uri())
        assert_inert(page, seen, ("file://",), "similarity.html")
        assert active_markup(page, "body") == []
        assert page.locator("mark").count() > 0


def test_an_unreadable_submission_is_listed_and_the_class_compared(tmp_path: Path) -> None:
    """Is a notebook that cannot be read (here a symlink) named on the page, the others compared?"""
    course = Course(copy_course(tmp_path / "course"))
    for sid in ("ana", "gilles", "bruno"):
        submit(course, sid, FIXTURES / f"{sid}.ipynb")
    link = course.submitted_notebook("zoe")
    link.parent.mkdir(parents=True)
    link.symlink_to(FIXTURES / "camille.ipynb")
    result = similarity(course)
    assert set(result.unreadable) == {"zoe"} and "lien symbolique" in result.unreadable["zoe"]
    assert [(p.a, p.b) for p in result.reported] == [("ana", "gilles")]
    assert "zoe" in result.html.read_text(encoding="utf-8")
