"""The fixtures every assignment's hidden checks get from the engine (a pytest plugin of
``run_checks``): ``artifacts_dir``, the probe's files, and ``artifact``, the one of the check's
group, whose check fails with the student's message when the function could not be probed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdkit.trusted.artifacts import Artifact, read_artifact, unusable_message

ARTIFACTS: pytest.StashKey[Path] = pytest.StashKey()  # set by run_checks for the session


@pytest.fixture(scope="session")
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    return request.config.stash[ARTIFACTS]


@pytest.fixture
def artifact(request: pytest.FixtureRequest, artifacts_dir: Path) -> Artifact:
    """The artifact of the check's group; the check fails with a clear message if unusable."""
    group = request.node.get_closest_marker("hidden_check").kwargs["id"].split("/", 1)[0]
    found = read_artifact(artifacts_dir, group)
    if not found.ok:
        pytest.fail(unusable_message(found), pytrace=False)
    return found
