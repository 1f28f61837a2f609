"""The oracle's reference training, kept across grading processes (``tdkit.trusted.oracle_cache``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_course

from tdkit.core.config import DATA_CACHE_ENV
from tdkit.trusted.oracle_cache import oracle_file, remembered

TRAIN = """
import json, sys
from pathlib import Path
from tdkit.core.assignment import use_course
use_course(Path(sys.argv[1]))
from grader_tests.td_cnn import oracle
trained = oracle.reference_training()
print(json.dumps({
    "dynamo": "torch._dynamo" in sys.modules,
    "history": trained.loss_history,
    "weights": {k: v.tolist() for k, v in trained.weights.items()},
}))
"""


def _train(course: Path, cache: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, str(course)],
        env={**os.environ, DATA_CACHE_ENV: str(cache)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_a_second_grading_process_takes_the_reference_training_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Does a second process get the very weights and losses the first trained, without training
    (no torch optimizer, so no torch._dynamo import), and does a changed reference train again?"""
    course = copy_course(tmp_path / "course")
    cache = tmp_path / "cache"
    monkeypatch.setenv(DATA_CACHE_ENV, str(cache))
    first = _train(course, cache)
    second = _train(course, cache)
    assert first["dynamo"] and not second["dynamo"]
    assert second["history"] == first["history"] and second["weights"] == first["weights"]
    sources = (course / "reference", course / "grader_tests" / "td_cnn")
    kept = oracle_file("reference_training", sources)
    assert kept.parent.parent == cache and [p.name for p in kept.parent.iterdir()] == [kept.name]
    td_cnn = course / "reference" / "td_cnn.py"
    td_cnn.write_text(td_cnn.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert oracle_file("reference_training", sources) != kept


@pytest.mark.parametrize("stored", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_an_unreadable_cache_file_is_computed_again_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: bytes
) -> None:
    """Is a damaged cache file (empty, truncated, foreign) never read as values, but recomputed and
    written again?"""
    monkeypatch.setenv(DATA_CACHE_ENV, str(tmp_path))
    path = oracle_file("values", [tmp_path / "source.py"])
    path.parent.mkdir(parents=True)
    path.write_bytes(stored)
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(3.0)}

    assert remembered("values", [tmp_path / "source.py"], compute)["x"].tolist() == [0.0, 1.0, 2.0]
    assert remembered("values", [tmp_path / "source.py"], compute)["x"].tolist() == [0.0, 1.0, 2.0]
    assert calls == [1]
