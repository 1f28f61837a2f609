"""Fixtures of td_cnn's hidden checks beside the engine's (``artifact``, ``artifacts_dir``): the
grading data."""

from __future__ import annotations

import pytest

from .inputs import GradingData
from .oracle import grading_data


@pytest.fixture(scope="session")
def data() -> GradingData:
    return grading_data()
