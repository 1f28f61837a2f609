"""``tdkit demo`` (``make demo``): the instructor's whole job on the example submissions.

Release the TD, collect ``examples/submissions/`` as an LMS export would bring them, grade
every one, print the score table and where the reports are.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tdkit import data
from tdkit.course import Course
from tdkit.errors import TdkitError
from tdkit.grade import GradeRun, grade_all
from tdkit.prepare import GradingProfile
from tdkit.release import ReleaseResult, release

LOCAL_COPY = Path(".tdkit") / "cifar10"  # the hub's data, exported for the offline sandbox


@dataclass(frozen=True)
class DemoResult:
    data_source: str
    release: ReleaseResult
    grading: GradeRun


def demo_data_source(course: Course, say: Callable[[str], None]) -> str:
    """The hub by default, ``TDKIT_CIFAR10`` if set, else (offline) the synthetic set, saying so."""
    local = os.environ.get(data.ENV_VAR)
    if local:
        say(f"data: {local} ({data.ENV_VAR})")
        return str(Path(local).resolve())
    copy = course.root / LOCAL_COPY
    if (copy / "plain_text").is_dir():
        say(f"data: {data.HUB_ID}, from its local export {copy}")
        return str(copy)
    try:
        hub = data.load_cifar10(data.HUB_ID)
    except TdkitError as error:
        say(f"data: the hub is out of reach and {data.ENV_VAR} is not set, so the demo uses the synthetic set ({error})")
        return data.SYNTHETIC
    # The sandbox has no network: export the hub's data once as a local parquet copy.
    for split in data.SPLITS:
        hub[split].to_parquet(copy / "plain_text" / f"{split}-00000-of-00001.parquet")
    say(f"data: {data.HUB_ID} (exported to {copy} for the offline sandbox)")
    return str(copy)


def lms_archive(examples: Path, archive: Path) -> Path:
    """The examples as an LMS export: one folder per student, named by the student's id."""
    notebooks = sorted(examples.glob("*.ipynb"))
    if not notebooks:
        raise TdkitError(f"No example notebook in {examples}: run 'python examples/build_submissions.py'.")
    with zipfile.ZipFile(archive, "w") as zf:
        for notebook in notebooks:
            zf.write(notebook, f"{notebook.stem}/td_cnn.ipynb")
    return archive


def run_demo(course: Course, say: Callable[[str], None] = print) -> DemoResult:
    from tdkit.collect import collect

    source = demo_data_source(course, say)
    released = release(course)
    say(f"released {released.release_path} (solution verified in {released.verify_seconds:.0f} s, no leak)")
    with tempfile.TemporaryDirectory(prefix="tdkit-demo-") as scratch:
        archive = lms_archive(course.root / "examples" / "submissions", Path(scratch) / "moodle_export.zip")
        collected = collect(course, archive, force=True)
    say(f"collected {len(collected.taken)} submission(s) from an LMS-style export")
    grading = grade_all(course, profile=GradingProfile(DATA_SOURCE=source), workers=2, progress=say)
    return DemoResult(source, released, grading)
