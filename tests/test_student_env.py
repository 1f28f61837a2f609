"""The student's side: the released notebook needs the TD's own packages, never tdkit."""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from uv import find_uv_bin

from grader_tests.td_cnn.assignment import Parameters
from tdkit.release.parameters import inject_parameters

REQUIREMENTS = REPO / "td-requirements.txt"
RELEASE = REPO / "release" / "td_cnn" / "td_cnn.ipynb"
SOLVED = REPO / "examples" / "td_cnn" / "submissions" / "alice_solution.ipynb"
TORCH = "torch==2.13.0"  # pinned as the Makefile does: unpinned, the resolver pulls the CUDA build
RUN = """
import sys, nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True).execute()
nbformat.write(nb, sys.argv[2])
"""


@pytest.fixture(scope="session")
def td_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with td-requirements.txt and nbclient only, installed by uv (seconds
    from its cache, where pip took two minutes); skips when they cannot be installed."""
    root = tmp_path_factory.mktemp("td-venv") / "venv"
    uv = find_uv_bin()
    # pip's find-links (this machine's CPU torch wheel) are uv's too: pip.conf is pip's alone.
    links = [
        arg
        for link in os.environ.get("PIP_FIND_LINKS", "").split()
        for arg in ("--find-links", link)
    ]
    for command in (
        [uv, "venv", "--quiet", str(root)],
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(root / "bin" / "python"),
            *links,
            TORCH,
            "-r",
            str(REQUIREMENTS),
            "nbclient",
        ],
    ):
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(
                f"cannot install the TD's packages ({' '.join(command)}): {done.stderr[-500:]}"
            )
    return root / "bin" / "python"


def _clean_env(tmp_path: Path, python: Path) -> dict[str, str]:
    """No PYTHONPATH, no user kernelspec or site-packages: the kernel is the venv's own Python."""
    return {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def test_td_venv_has_no_tdkit(td_venv: Path, tmp_path: Path) -> None:
    """Is tdkit out of reach of the TD's environment (so the next test proves something)?"""
    found = subprocess.run(
        [str(td_venv), "-c", "import importlib.util; print(importlib.util.find_spec('tdkit'))"],
        env=_clean_env(tmp_path, td_venv),
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None"


def test_release_runs_with_the_td_packages_only(td_venv: Path, tmp_path: Path) -> None:
    """With only the TD's packages, does the release, answered, run top to bottom on a local folder
    in the hub's layout, every visible test passing?"""
    release = nbformat.read(RELEASE, as_version=4)
    solved = nbformat.read(SOLVED, as_version=4)
    assert not [c.source for c in release.cells if c.cell_type == "code" and "tdkit" in c.source]
    # The answered notebook differs from the release only in the students' cells.
    for ours, theirs in zip(release.cells, solved.cells):
        if not ours.get("metadata", {}).get("nbgrader", {}).get("solution"):
            assert ours.source == theirs.source
    profile = Parameters()
    folder = profile.data_folder(cache=tmp_path / "data")
    parameters = {**asdict(profile), "DATA_SOURCE": str(folder)}
    nb = inject_parameters(solved, parameters)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import importlib.util, sys\nprint(importlib.util.find_spec('tdkit'))"
        )
    )
    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    (tmp_path / "run.py").write_text(RUN, encoding="utf-8")
    run = subprocess.run(
        [str(td_venv), str(tmp_path / "run.py"), str(source), str(executed)],
        cwd=tmp_path,
        env=_clean_env(tmp_path, td_venv),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = nbformat.read(executed, as_version=4)
    errors = [
        f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
        for i, cell in enumerate(done.cells)
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    visible = [
        c
        for c in done.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade") and c.cell_type == "code"
    ]
    assert len(visible) == 6 and all(c.execution_count for c in visible)
    assert done.cells[-1].outputs[0]["text"].strip() == "None"
    printed = "".join(
        o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "DatasetDict" in printed and f"num_rows: {profile.TRAIN_SUBSET}" in printed


def test_tdkit_check_runs_the_visible_tests_on_the_grading_data() -> None:
    """Does `tdkit check` run a notebook on tdkit's synthetic folder and say which visible test fails?"""
    from tdkit.selfcheck import self_check

    report = self_check(REPO / "examples" / "td_cnn" / "submissions" / "bob_td_loop_kept.ipynb")
    assert report.failure is None and report.other_errors == []
    assert {t.grade_id: t.passed for t in report.tests} == {
        "test_train": False,
        "test_learning_curve": True,
        "test_predict": True,
        "test_accuracy": True,
        "test_confusion_matrix": True,
        "test_activation_maps": True,
    }
    assert "optimizer.step()" in next(t.message for t in report.tests if t.grade_id == "test_train")
