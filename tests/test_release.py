"""The instructor's release: solution checked, release generated, nothing leaked."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, copy_course
from nbgrader.dbutil import write_alembic_ini

from tdkit.core.course import Course
from tdkit.core.errors import TdkitError
from tdkit.release import generate as release_module
from tdkit.release.generate import release
from tdkit.release.leaks import find_leaks, missing_stub_lines
from tdkit.release.notebooks import pair_text, read_source


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.mark.parametrize("name", ["td_cnn", "td_mlp"])
def test_committed_release_is_fresh(name: str, tmp_path: Path) -> None:
    """Does `tdkit release` (solution run included) regenerate exactly the committed release and
    pair, of each assignment?"""
    # td_mlp reads td_cnn's CIFAR-10 folders (grader_tests/td_mlp/assignment.py): both are copied.
    course = Course(copy_course(tmp_path / "course", tuple({name: 1, "td_cnn": 1})), name)
    result = release(course)
    assert result.verified
    assert result.release_path.read_text(encoding="utf-8") == (
        REPO / f"release/{name}/{name}.ipynb"
    ).read_text(encoding="utf-8"), (
        f"release/ is stale: run 'tdkit release {name}' and commit the result"
    )
    assert not result.changed
    assert (REPO / f"source/{name}/{name}.ipynb").read_text(encoding="utf-8") == pair_text(
        REPO / f"source/{name}/{name}.md"
    ), f"the .ipynb pair is stale: run 'tdkit release {name}' and commit the result"


def test_release_shows_the_buggy_loop() -> None:
    """Is `train` released as the TD's buggy loop (backward then zero_grad, no step), not a stub?"""
    nb = nbformat.read(REPO / "release/td_cnn/td_cnn.ipynb", as_version=4)
    body = _cell(nb, "train").source
    assert "loss.backward()\n            optimizer.zero_grad()" in body
    assert "optimizer.step()" not in body
    assert "NotImplementedError" not in body
    assert "NotImplementedError" in _cell(nb, "predict").source


def test_committed_release_has_no_leak() -> None:
    """Does the committed release hold no solution or hidden-test line, and the whole stub?"""
    source = read_source(REPO / "source/td_cnn/td_cnn.md")
    released = nbformat.read(REPO / "release/td_cnn/td_cnn.ipynb", as_version=4)
    assert find_leaks(source, released) == []
    assert missing_stub_lines(source, released) == []
    assert "BEGIN HIDDEN TESTS" not in nbformat.writes(released)


@pytest.mark.parametrize(
    ("planted", "kind"),
    [
        (
            '    inputs = torch.as_tensor(dataset.with_format("numpy")[:]["zdata"], dtype=torch.float32)',
            "solution",
        ),
        ('check("train", globals())', "hidden test"),
        (
            "Sur quelques exemples on ne peut rien conclure : il faut une mesure sur tout le test. Les erreurs",
            "solution",
        ),
    ],
)
def test_planted_leak_is_caught(planted: str, kind: str) -> None:
    """Is a solution or hidden-test line planted in the release reported as a leak?"""
    source = read_source(REPO / "source/td_cnn/td_cnn.md")
    released = nbformat.read(REPO / "release/td_cnn/td_cnn.ipynb", as_version=4)
    released.cells[-1].source += "\n" + planted
    leaks = find_leaks(source, released)
    assert [(leak.kind, leak.line) for leak in leaks] == [(kind, planted.strip())]


def test_leaky_release_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does release() refuse a leaking notebook and leave the committed release untouched?"""
    course = Course(copy_course(tmp_path / "course"))
    before = course.release_notebook.read_bytes()
    real = release_module.generate_release

    def leaky(c: Course) -> nbformat.NotebookNode:
        nb = real(c)
        nb.cells[-1].source += "\n    optimizer.step()\n    return torch.cat(predictions).numpy()"
        return nb

    monkeypatch.setattr(release_module, "generate_release", leaky)
    with pytest.raises(TdkitError, match="leaks"):
        release(course, verify=False)
    assert course.release_notebook.read_bytes() == before


def test_failing_solution_stops_the_release(tmp_path: Path) -> None:
    """Does a solution that fails its own hidden checks stop the release, naming the cell?"""
    course = Course(copy_course(tmp_path / "course"))
    shutil.rmtree(course.root / "release")
    md = course.source_md.read_text(encoding="utf-8")
    broken = md.replace(
        "    return float(np.mean(predict(model, dataset) == labels))",
        "    return 100 * float(np.mean(predict(model, dataset) == labels))",
    )
    assert broken != md
    course.source_md.write_text(broken, encoding="utf-8")
    with pytest.raises(TdkitError, match="test_accuracy") as raised:
        release(course)
    assert "synthetic" in str(raised.value)
    assert not course.release_notebook.exists()


def test_md_is_never_released(tmp_path: Path) -> None:
    """Does nbgrader's generate_assignment leave the solution .md out of the release directory?"""
    course = Course(copy_course(tmp_path / "course"))
    nb = release_module.generate_release(course)
    assert any(c.metadata.get("nbgrader", {}).get("grade_id") == "train" for c in nb.cells)


STAMP = """
import sqlite3, subprocess, sys
from tdkit.core.course import in_process_alembic_head
in_process_alembic_head()
from nbgrader.api import Gradebook
def refused(*args, **kwargs):
    raise AssertionError(f"a process was started: {args[0]}")
subprocess.Popen.__init__ = refused
with Gradebook("sqlite:///" + sys.argv[1]) as gb:
    gb.add_student("s1")
print(sqlite3.connect(sys.argv[1]).execute("select version_num from alembic_version").fetchone()[0])
"""


def test_new_gradebook_is_stamped_with_nbgraders_head_in_process(tmp_path: Path) -> None:
    """Is a new gradebook stamped with the revision `alembic heads` gives for nbgrader's migrations,
    without starting a process (6 s each), and without the venv's scripts on PATH?"""
    scripts = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder:
        ini = Path(folder) / "alembic.ini"
        write_alembic_ini(str(ini), f"sqlite:///{tmp_path / 'unused.db'}")
        heads = subprocess.run(
            [scripts / "alembic", "-c", ini, "heads"], capture_output=True, text=True, check=True
        )
    stamped = subprocess.run(
        [sys.executable, "-c", STAMP, str(tmp_path / "gradebook.db")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert stamped.returncode == 0, stamped.stderr
    assert stamped.stdout.strip() == heads.stdout.split()[0]
