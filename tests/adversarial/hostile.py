"""Hostile and broken submissions, each a real notebook built from the release notebook.

The solution code is parsed from ``source/td_cnn/td_cnn.md`` by ``examples/build_submissions.py``
(imported, never copied); each case adds or changes cells the way a student would. ``write_all``
puts every case under a course's ``submitted/`` folder; ``CASES`` says what each one tries.
"""

from __future__ import annotations

import copy
import io
import json
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "examples") not in sys.path:
    sys.path.insert(0, str(REPO / "examples"))

import build_submissions as bs

SECRET_ENV = "TDKIT_TEST_SECRET"
SECRET_VALUE = "s3cr3t-of-the-grader"


@cache
def _release() -> NotebookNode:
    return nbformat.read(bs.RELEASE, as_version=4)


@cache
def _solution() -> dict[str, str]:
    return bs.parse_solution()


def solution_nb() -> NotebookNode:
    """The release with every solution cell (code and answers) filled as the instructor wrote it."""
    sub = bs.Submission("solution", "full solution", dict(_solution()))
    return nbformat.reads(bs.build_notebook(_release(), sub), as_version=4)


def release_nb() -> NotebookNode:
    return copy.deepcopy(_release())


def _index(nb: NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def after_imports(nb: NotebookNode, source: str) -> NotebookNode:
    """A new code cell right after the notebook's import cell (the student's 'try something' cell)."""
    nb.cells.insert(2, nbformat.v4.new_code_cell(textwrap.dedent(source).strip("\n")))
    return nb


def at_end(nb: NotebookNode, source: str) -> NotebookNode:
    nb.cells.append(nbformat.v4.new_code_cell(textwrap.dedent(source).strip("\n")))
    return nb


def replace_solution(nb: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    nb.cells[_index(nb, grade_id)].source = textwrap.dedent(source).strip("\n")
    return nb


# ------------------------------------------------------------------------------------------
# Resource abuse

def memory_and_output_flood() -> NotebookNode:
    nb = solution_nb()
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}  # foreign kernel
    after_imports(nb, '''
        import sys
        chunk = "x" * (1024 * 1024 - 1) + "\\n"
        for _ in range(100):  # 100 MB on stdout
            sys.stdout.write(chunk)
    ''')
    after_imports(nb, '''
        import base64
        from IPython.display import display
        display({"image/png": base64.b64encode(b"\\x89PNG" + bytes(50 * 1024 * 1024)).decode()}, raw=True)
        display({"application/x-tdkit-unknown": {"a": 1}, "text/plain": "inconnu"}, raw=True)
    ''')
    after_imports(nb, '''
        # Mémoire : d'un coup, puis petit à petit
        try:
            bomb = bytearray(64 * 1024**3)
        except MemoryError:
            print("MEMORY:refused")
        hoard = []
        try:
            while True:
                hoard.append(bytearray(256 * 1024**2))
        except MemoryError:
            print("MEMORY:stopped after", len(hoard))
        del hoard
    ''')
    # Outputs of unknown MIME types saved in the submitted file (nbgrader clears them).
    nb.cells[4].outputs = [nbformat.v4.new_output("display_data", data={"application/x-weird+json": {"b": 2}})]
    return nb


def interruptible_sleep() -> NotebookNode:
    return after_imports(solution_nb(), "import time\ntime.sleep(10**6)")


def infinite_loop_ignoring_interrupts() -> NotebookNode:
    return after_imports(solution_nb(), '''
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    ''')


def kernel_exit() -> NotebookNode:
    return after_imports(solution_nb(), "import os\nos._exit(3)")


def segfault() -> NotebookNode:
    return after_imports(solution_nb(), "import ctypes\nctypes.string_at(0)")


def fork_bomb() -> NotebookNode:
    return after_imports(solution_nb(), '''
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    ''')


# ------------------------------------------------------------------------------------------
# Escape attempts (every attempt prints ESCAPE:<what>:open or ESCAPE:<what>:blocked)

def escape(targets: dict[str, str], writes: list[str]) -> NotebookNode:
    nb = solution_nb()
    nb.metadata.pop("kernelspec", None)  # missing kernelspec
    after_imports(nb, f'''
        import os, socket, subprocess, sys, urllib.request
        def attempt(what, action):
            try:
                action()
                print(f"ESCAPE:{{what}}:open")
            except BaseException as error:
                print(f"ESCAPE:{{what}}:blocked", type(error).__name__)
        attempt("socket", lambda: socket.create_connection(("1.1.1.1", 80), timeout=3).close())
        attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
        attempt("urllib", lambda: urllib.request.urlopen("https://pypi.org/simple/", timeout=3).read())
        def pip():
            done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--timeout", "3",
                                   "--retries", "0", "six-tdkit-nonexistent"], capture_output=True, timeout=60)
            if done.returncode != 0:
                raise OSError(done.returncode)
        attempt("pip", pip)
        for what, path in {targets!r}.items():
            attempt("read-" + what, lambda path=path: open(path, "rb").read(1))
        for path in {writes!r}:
            attempt("write-" + path, lambda path=path: open(path, "w").write("pwned"))
        print("SECRET:" + str(os.environ.get({SECRET_ENV!r})))
        print("ENVKEYS:" + ",".join(sorted(os.environ)))
    ''')
    return nb


# ------------------------------------------------------------------------------------------
# Cheating

def edited_test_cells() -> NotebookNode:
    """The release (TD loop kept, nothing written) with its test cells and metadata tampered."""
    nb = release_nb()
    nb.cells[_index(nb, "test_train")].source = "pass  # plus de test"
    nb.cells[_index(nb, "test_accuracy")].metadata["nbgrader"]["points"] = 100
    nb.cells[_index(nb, "test_confusion_matrix")].metadata["nbgrader"]["grade_id"] = "test_bonus"
    duplicate = copy.deepcopy(nb.cells[_index(nb, "test_activation_maps")])
    duplicate.id = "dup-activation"
    nb.cells.append(duplicate)
    del nb.cells[_index(nb, "test_predict")]
    extra = nbformat.v4.new_code_cell("pass")
    extra.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 50,
                                  "grade_id": "bonus_points", "schema_version": 3}
    nb.cells.append(extra)
    return nb


FAKE_TRAIN = {"status": "ok", "function": "train", "events": "FBS" * 200, "loss_history": [2.0, 1.0],
              "returned": {"type": "builtins.list"}, "input_sums": [], "batch_sizes": []}


def fake_probe_and_artifacts() -> NotebookNode:
    """The release, plus a cell that forges the probe and its artifacts to pass ``train/step_called``."""
    return at_end(release_nb(), f'''
        import json, os, sys
        import tdkit.probe
        FAKE = {json.dumps(FAKE_TRAIN)}
        def fake_probe(namespace, out_dir, *args, **kwargs):
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "train.json"), "w") as f:
                f.write(json.dumps(FAKE))
            return {{"train": "ok"}}
        tdkit.probe.run_probe = fake_probe
        sys.modules["tdkit.probe"].run_probe = fake_probe
        for folder in ("artifacts", ".probe-0"):
            fake_probe(None, folder)
        sys.exit = lambda *a: None
    ''')


def patched_savers() -> NotebookNode:
    """The release, plus monkeypatched builtins and savers (the probe refuses to run in that kernel).

    ``json.dumps`` itself is left alone: the kernel's own messages need it."""
    return at_end(release_nb(), '''
        import builtins, json
        import numpy as np
        class AlwaysFine(Exception):
            pass
        builtins.AssertionError = AlwaysFine
        json.dump = lambda obj, fp, **k: fp.write('{"status": "ok", "events": "FBS"}')
        np.savez = lambda *a, **k: None
    ''')


def always_equal_and_nan() -> NotebookNode:
    """The solution with predict returning objects equal to everything, and NaN-laden matrices."""
    nb = solution_nb()
    replace_solution(nb, "predict", '''
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            def __int__(self):
                return 0
            __hash__ = object.__hash__

        def predict(model, dataset):
            return np.array([Anything() for _ in range(dataset.num_rows)], dtype=object)
    ''')
    cell = nb.cells[_index(nb, "confusion_matrix")]
    cell.source = cell.source + textwrap.dedent('''


        def confusion_matrix(model, dataset):
            return np.full((10, 10), np.nan)
    ''')
    return nb


# ------------------------------------------------------------------------------------------
# Broken files (bytes, not notebooks)

def _json(nb: NotebookNode) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


def invalid_json() -> bytes:
    return _json(solution_nb())[:-200]


def nbformat3() -> bytes:
    return nbformat.writes(nbformat.convert(solution_nb(), 3)).encode("utf-8")


def non_utf8() -> bytes:
    return _json(solution_nb()).replace("Entraîne".encode(), "Entraîne".encode("latin-1"), 1)


def empty() -> bytes:
    return b""


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("td_cnn.ipynb", _json(solution_nb()))
    return buffer.getvalue()


def many_cells() -> bytes:
    nb = solution_nb()
    nb.cells += [nbformat.v4.new_code_cell(f"x_{i} = {i}") for i in range(5000)]
    return _json(nb)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    build: Callable[[], NotebookNode | bytes]


CASES = [
    Case("flood", "memory bomb, 100 MB on stdout, a 50 MB image, unknown MIME outputs, foreign kernelspec",
         memory_and_output_flood),
    Case("sleep", "a cell sleeping past the cell limit", interruptible_sleep),
    Case("loop", "an infinite loop that ignores interrupts", infinite_loop_ignoring_interrupts),
    Case("os_exit", "os._exit(3) in a cell", kernel_exit),
    Case("segfault", "a segfault via ctypes", segfault),
    Case("fork_bomb", "a fork bomb", fork_bomb),
    Case("cheat_tests", "test cells edited, deleted, duplicated; points raised; grade_id changed", edited_test_cells),
    Case("cheat_probe", "tdkit.probe.run_probe and sys.exit replaced, fake artifact files",
         fake_probe_and_artifacts),
    Case("cheat_savers", "builtins.AssertionError, json.dump, np.savez monkeypatched", patched_savers),
    Case("cheat_values", "predict returns always-equal objects, confusion_matrix NaN", always_equal_and_nan),
    Case("broken_json", "invalid JSON (truncated)", invalid_json),
    Case("broken_v3", "nbformat 3", nbformat3),
    Case("broken_latin1", "non-UTF-8 bytes", non_utf8),
    Case("broken_empty", "an empty file", empty),
    Case("broken_zip", "a zip renamed .ipynb", zipped),
    Case("broken_5000", "5 000 cells", many_cells),
]


def write(course_submitted: Path, student: str, assignment: str, content: NotebookNode | bytes) -> Path:
    target = course_submitted / student / assignment / f"{assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content if isinstance(content, bytes) else _json(content))
    return target
