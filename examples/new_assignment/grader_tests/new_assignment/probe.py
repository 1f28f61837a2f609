"""new_assignment's probe: calls ``standardize`` on grader-chosen rows, in the student's kernel.

Runs in the sandbox; records what the function returned and whether it changed its argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tdkit.untrusted.probe import Probes, array_result


def grading_rows() -> np.ndarray:
    """Columns of different means and scales: a standardisation over the whole array fails."""
    rng = np.random.default_rng(7)
    return rng.normal([3.0, -10.0, 0.5], [2.0, 0.1, 30.0], size=(20, 3))


PROBES = Probes(grading_rows)


@PROBES("standardize")
def _probe_standardize(ns: Mapping[str, Any], rows: np.ndarray, out: Path) -> dict[str, Any]:
    given = rows.copy()
    result = array_result(ns["standardize"](given), "standardize", out)
    return {**result, "side_effects": [] if np.array_equal(given, rows) else ["x"]}
