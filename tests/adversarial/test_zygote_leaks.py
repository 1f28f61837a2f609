"""Runs forked from one zygote share nothing: what a run leaves never reaches the next one.

In ONE worker (so one zygote), a leaking submission runs first: it leaves a double-forked,
``setsid`` background process, writes a file into every directory it can write (a walk of ``/``),
tries to modify installed modules on disk and patches imported ones (``torch.nn.functional``,
``numpy``, ``builtins``, ``tdkit``). Then the correct solution runs; then, in a second grading of
the same process (served by the same idle zygote), a spy (the solution plus a cell reporting what
it sees). Every notebook is the release filled the way
``tests/adversarial/hostile.py`` builds them.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import copy_course
from hostile import at_end, solution_nb, write

from tdkit.core.config import Limits
from tdkit.core.course import Course
from tdkit.release.generate import release
from tdkit.trusted.grade import GradeRun, grade_all
from tdkit.untrusted import zygote

pytestmark = pytest.mark.skipif(
    not zygote.enabled(),
    reason="forked runs need root and bubblewrap (scripts/system-deps.sh), and TDKIT_ZYGOTE unset",
)

LIMITS = Limits(cell_timeout=30, run_timeout=180)
FULL = 21.0
LEAKER, CORRECT, SPY = "a_leaker", "b_correct", "c_spy"  # graded in this order by one worker

# Both notebooks walk the filesystem the same way: every directory the run may write.
_WALK = """
import os
def _writable_dirs():
    found = []
    for top, dirs, _files in os.walk("/", onerror=lambda error: None):
        if top in ("/proc", "/sys"):
            dirs[:] = []
            continue
        try:
            if os.statvfs(top).f_flag & os.ST_RDONLY:
                dirs[:] = []
                continue
        except OSError:
            continue
        if os.access(top, os.W_OK):
            found.append(top)
    return found
"""

LEAK = (
    _WALK
    + """
import builtins, json, subprocess, sys, time, numpy, torch, torch.nn.functional, tdkit
MARK = "{mark}"
written = []
for folder in _writable_dirs():
    try:
        with open(os.path.join(folder, MARK + ".txt"), "w") as handle:
            handle.write("leak")
        written.append(folder)
    except OSError:
        pass
modules = {{}}
for module in (numpy, torch.nn.functional, tdkit):
    try:
        with open(module.__file__, "a") as handle:
            handle.write("\\nLEAKED = True\\n")
        modules[module.__name__] = "modified"
    except OSError as error:
        modules[module.__name__] = "blocked"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARK])
    os._exit(0)
time.sleep(0.2)
for owner in (numpy, torch.nn.functional, builtins, tdkit):
    setattr(owner, "_tdkit_leak", MARK)
numpy.mean = lambda *args, **kwargs: 0.0
torch.nn.functional.relu = lambda x, *args, **kwargs: x * 0
builtins.sum = lambda *args, **kwargs: 0
print("LEAK:" + json.dumps({{"written": written, "modules": modules}}))
"""
)

SPY_CELL = (
    _WALK
    + """
import builtins, json, numpy, torch, torch.nn.functional, tdkit
MARK = "{mark}"
files = []
for folder in _writable_dirs():
    try:
        files += [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(MARK)]
    except OSError:
        files.append("unreadable:" + folder)
processes = []
for pid in os.listdir("/proc"):
    try:
        with open(f"/proc/{{pid}}/cmdline", "rb") as handle:
            processes.append(handle.read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
marked = [owner.__name__ for owner in (numpy, torch.nn.functional, builtins, tdkit)
          if hasattr(owner, "_tdkit_leak")]
genuine = {{
    "numpy.mean": numpy.mean.__module__,
    "relu": torch.nn.functional.relu.__module__,
    "sum": builtins.sum(range(4)),
    "relu_value": float(torch.nn.functional.relu(torch.ones(1)).item()),
}}
on_disk = [m.__name__ for m in (numpy, torch.nn.functional, tdkit) if "LEAKED" in open(m.__file__).read()]
print("SPY:" + json.dumps({{"files": files, "processes": processes, "marked": marked,
                            "genuine": genuine, "on_disk": on_disk}}))
"""
)


@dataclass
class Leaks:
    course: Course
    first: GradeRun  # the leaker, then the correct solution
    second: GradeRun  # the spy alone, a later grading in the same process
    mark: str
    zygotes_started: int  # by the second grading

    def printed(self, sid: str, prefix: str) -> dict[str, object]:
        nb = nbformat.read(self.course.autograded_notebook(sid), as_version=4)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                for line in str(output.get("text", "")).splitlines():
                    if line.startswith(prefix):
                        return dict(json.loads(line[len(prefix) :]))
        raise AssertionError(f"{sid} printed no {prefix} line")


@pytest.fixture(scope="module")
def leaks(tmp_path_factory: pytest.TempPathFactory) -> Leaks:
    course = Course(copy_course(tmp_path_factory.mktemp("zygote-leaks")))
    release(course, verify=False)
    mark = f"tdkit-leak-{secrets.token_hex(8)}"
    write(
        course.submitted, LEAKER, course.assignment, at_end(solution_nb(), LEAK.format(mark=mark))
    )
    write(course.submitted, CORRECT, course.assignment, solution_nb())
    first = grade_all(course, limits=LIMITS, workers=1, progress=lambda line: None)
    write(
        course.submitted, SPY, course.assignment, at_end(solution_nb(), SPY_CELL.format(mark=mark))
    )
    started = zygote.started()
    second = grade_all(course, limits=LIMITS, workers=1, progress=lambda line: None)
    return Leaks(course, first, second, mark, zygote.started() - started)


def test_a_later_grading_reuses_the_zygote(leaks: Leaks) -> None:
    """Does a second grading in the same process run on the first one's zygote, starting none?"""
    assert leaks.second.graded == [SPY]
    assert leaks.zygotes_started == 0


def test_the_leaker_did_leave_things(leaks: Leaks) -> None:
    """Did the leaking run write somewhere (at least its scratch) and find every module read-only?"""
    report = leaks.printed(LEAKER, "LEAK:")
    assert report["written"], report
    assert set(dict(report["modules"]).values()) == {"blocked"}, report  # type: ignore[call-overload]


def test_the_next_correct_submission_keeps_full_marks(leaks: Leaks) -> None:
    """Does the correct submission graded right after the leaker, in the same worker, keep full marks?"""
    result = leaks.first.results.students[CORRECT]
    assert (result.score, result.failure, result.errors) == (FULL, None, [])


def test_the_spy_sees_nothing_of_the_leaker(leaks: Leaks) -> None:
    """Does a later run see no leftover process, no leaked file, no patched or modified module?"""
    report = leaks.printed(SPY, "SPY:")
    assert report["files"] == [], report
    assert not [p for p in report["processes"] if leaks.mark in p], report  # type: ignore[attr-defined]
    assert report["marked"] == [] and report["on_disk"] == [], report
    assert report["genuine"] == {
        "numpy.mean": "numpy",
        "relu": "torch.nn.functional",
        "sum": 6,
        "relu_value": 1.0,
    }
    assert leaks.second.results.students[SPY].score == FULL


def test_nothing_survives_on_the_host(leaks: Leaks) -> None:
    """After grading, is no process of the leaker alive and no leaked file left in /tmp or /dev/shm?"""
    alive = []
    for pid in os.listdir("/proc"):
        try:
            if leaks.mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            continue
    assert alive == []
    left = [
        os.path.join(top, name)
        for root in ("/tmp", "/dev/shm")
        for top, _dirs, files in os.walk(root, onerror=lambda error: None)
        for name in files
        if name.startswith(leaks.mark)
    ]
    assert left == []
