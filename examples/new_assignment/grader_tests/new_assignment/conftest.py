"""Fixtures of the hidden checks: the probe's artifact of the check's group."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdkit.trusted.artifacts import Artifact, read_artifact, unusable_message
from tdkit.trusted.checks import fail


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--artifacts", required=True, help="directory of the probe's artifacts")
    parser.addoption("--reference-out", default=None, help="no figure: nothing is written")


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Artifact:
    """The artifact of the check's group; the check fails with a clear message if unusable."""
    group = request.node.get_closest_marker("hidden_check").kwargs["id"].split("/", 1)[0]
    found = read_artifact(Path(request.config.getoption("--artifacts")), group)
    if not found.ok:
        fail(unusable_message(found))
    return found
