"""The probe cell: appended to every prepared submission, run last in the kernel.

Built on the trusted side (``tdkit.intake.submission``) and aimed by the runner at a folder of its
choosing. The cell re-imports tdkit and the assignment's probe from disk, checks that the objects the probe's
savers rely on are the genuine ones, then calls ``tdkit.untrusted.probe.run_probe``; when the notebook replaced
them it prints a refusal instead, which :func:`probe_refusal` reads back. Light on purpose
(nbformat only): preparing a submission imports neither torch nor the probe.
"""

from __future__ import annotations

from typing import cast

import nbformat
from nbformat.notebooknode import NotebookNode

ARTIFACTS = "artifacts"  # where the runner publishes the probe's files in the scratch folder
PROBE_TAG = "tdkit-probe"


PROBE_REFUSED = (
    "La sonde du correcteur a été refusée : le notebook a remplacé {names}. Rien n'a été évalué ; "
    "ne modifiez ni les fonctions de Python, de json, de numpy ni tdkit."
)
# Run in the kernel before the probe: the objects the probe and its savers rely on must be the
# genuine ones (defined in their own package). Defence in depth only: the score never depends on
# it (every check compares with the reference computed outside the sandbox).
_INTEGRITY = """
def _tdkit_tampered():
    import builtins, json, os, pathlib, numpy
    bad = []
    for name in ("open", "float", "int", "list", "dict", "str", "len", "isinstance", "callable", "getattr",
                 "type", "print", "BaseException", "Exception", "AssertionError", "KeyboardInterrupt"):
        if getattr(getattr(builtins, name, None), "__module__", None) not in ("builtins", "io", "_io"):
            bad.append("builtins." + name)
    for label, owner, names, package in (
        ("json", json, ("dumps", "dump", "loads"), json),
        ("numpy", numpy, ("savez", "load"), numpy),
        ("pathlib.Path", pathlib.Path, ("write_text", "write_bytes", "mkdir", "read_text"), pathlib),
    ):
        home = os.path.dirname(os.path.realpath(package.__file__))
        home = home if package is not pathlib else os.path.realpath(package.__file__)
        for name in names:
            function = getattr(getattr(owner, name, None), "__wrapped__", getattr(owner, name, None))
            code = getattr(function, "__code__", None)
            if code is None or not os.path.realpath(code.co_filename).startswith(home):
                bad.append(label + "." + name)
    return bad
"""


def probe_source(out_dir: str, probe_root: str = "", assignment: str = "") -> str:
    """The probe cell: tdkit and the assignment's probe (``grader_tests.<assignment>``, from the
    job's read-only ``probe_root``) re-imported from disk (patched ones are dropped), savers
    checked, then the probe; refused (no artifact at all) when the notebook replaced them."""
    return (
        "import sys as _tdkit_sys\n"
        "for _tdkit_name in [n for n in list(_tdkit_sys.modules) if n.split('.')[0] in ('tdkit', 'grader_tests')]:\n"
        "    del _tdkit_sys.modules[_tdkit_name]\n"
        f"_tdkit_sys.path.insert(0, {probe_root!r})\n"
        f"{_INTEGRITY}\n"
        "_tdkit_bad = _tdkit_tampered()\n"
        "if _tdkit_bad:\n"
        f"    _tdkit_sys.stderr.write('[tdkit] ' + {PROBE_REFUSED!r}.format(names=', '.join(_tdkit_bad)) + '\\n')\n"
        "else:\n"
        "    from tdkit.untrusted.probe import run_probe as _tdkit_run_probe\n"
        f"    _tdkit_run_probe(globals(), {out_dir!r}, {assignment!r})\n"
    )


def probe_cell() -> NotebookNode:
    """The probe cell appended to a submission (its output folder and probe are the runner's)."""
    cell = cast(
        NotebookNode,
        nbformat.v4.new_code_cell(probe_source(ARTIFACTS), metadata={"tags": [PROBE_TAG]}),
    )
    cell.id = PROBE_TAG
    return cell


def with_probe_into(
    nb: NotebookNode, out_dir: str, probe_root: str, assignment: str
) -> NotebookNode:
    for cell in nb.cells:
        if PROBE_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = probe_source(out_dir, probe_root, assignment)
    return nb


def probe_refusal(nb: NotebookNode) -> str | None:
    """The refusal the probe cell printed, if it did."""
    for cell in nb.cells:
        if PROBE_TAG in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                text = str(output.get("text", ""))
                if "[tdkit] La sonde du correcteur a été refusée" in text:
                    return text.split("[tdkit] ", 1)[1].strip()[:1000]
    return None
