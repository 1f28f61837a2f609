"""What each graded submission no longer pays for: lazy imports in forked kernels, module scans in
the checks, an IRI grammar compiled in every process that reads a notebook."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from tdkit.core.assignment import use_course
from tdkit.core.config import Limits
from tdkit.untrusted import zygote
from tdkit.untrusted.job import SandboxJob, execute_job

LOADED = f"import json, sys\nprint('LOADED:' + json.dumps([n in sys.modules for n in {zygote.LAZY_IMPORTS!r}]))"


@pytest.mark.skipif(
    not zygote.enabled(),
    reason="forked runs need root and bubblewrap (scripts/system-deps.sh), and TDKIT_ZYGOTE unset",
)
def test_forked_kernel_starts_with_the_lazy_imports() -> None:
    """Does a forked kernel find torch._dynamo, scipy.io, psutil and pytest imported before its first cell?"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LOADED)])
    limits = Limits(memory_mb=4096, cpu_seconds=300, max_processes=128, run_timeout=120)
    outcome = execute_job(SandboxJob("preload", nbformat.writes(nb), limits))
    assert outcome.executed is not None, outcome.output
    text = "".join(
        str(o.get("text", ""))
        for o in nbformat.reads(outcome.executed, as_version=4).cells[0].outputs
    )
    assert "LOADED:" in text, outcome.output
    loaded = json.loads(text.split("LOADED:", 1)[1].splitlines()[0])
    assert all(loaded), dict(zip(zygote.LAZY_IMPORTS, loaded))


def _fake_module(name: str, path: Path) -> types.ModuleType:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    return module


def test_another_courses_grading_modules_are_forgotten(tmp_path: Path) -> None:
    """Is another course's reference and grading package dropped from sys.modules, ours kept?"""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours_reference = _fake_module("reference.ours", ours / "reference" / "ours.py")
    names = ("reference.ours", "reference.theirs", "grader_tests.theirs")
    try:
        sys.modules["reference.ours"] = ours_reference
        sys.modules["reference.theirs"] = _fake_module(
            "reference.theirs", theirs / "reference" / "theirs.py"
        )
        sys.modules["grader_tests.theirs"] = _fake_module(
            "grader_tests.theirs", theirs / "grader_tests" / "theirs.py"
        )
        use_course(ours)
        assert "reference.theirs" not in sys.modules
        assert "grader_tests.theirs" not in sys.modules
        assert sys.modules["reference.ours"] is ours_reference
        assert sys.path[0] == str(ours.resolve())
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.path.remove(str(ours.resolve()))


def test_modules_that_cannot_be_a_courses_are_not_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Are only the paths of modules named as a course's grading side or reference resolved, not
    those of torch and the rest (thousands of paths: half a second in each grading process)?"""
    resolved: list[str] = []
    real_resolve = Path.resolve

    def resolve(self: Path, strict: bool = False) -> Path:
        resolved.append(str(self))
        return real_resolve(self, strict)

    theirs = _fake_module("grader_tests.theirs", tmp_path / "theirs" / "grader_tests" / "t.py")
    monkeypatch.setitem(sys.modules, "grader_tests.theirs", theirs)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(Path, "resolve", resolve)
    use_course(tmp_path / "ours")
    monkeypatch.undo()
    assert "grader_tests.theirs" not in sys.modules
    assert len(resolved) < 20, resolved
    assert all("grader_tests" in path or "reference" in path or "ours" in path for path in resolved)


IRI = """
import json, sys
{first}
import inspect, jsonschema, nbformat, rfc3987_syntax
inspect.unwrap(rfc3987_syntax), getattr(rfc3987_syntax, "__file__", None)  # as tools probe modules
compiled_before = "rfc3987_syntax.syntax_helpers" in sys.modules
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
verdicts = [
    jsonschema.Draft7Validator({{"format": fmt}}, format_checker=checker).is_valid(value)
    for fmt in ("iri", "iri-reference")
    for value in ("http://example.org/élève?q=1#x", "not an iri ::", "http://[bad", "../a/b")
]
compiled = "rfc3987_syntax.syntax_helpers" in sys.modules
print(json.dumps([compiled_before, verdicts, compiled]))
"""


def test_reading_notebooks_compiles_no_iri_grammar_and_iris_are_checked_alike() -> None:
    """After `import tdkit`, does importing nbformat leave rfc3987_syntax's grammar uncompiled (2.7 s
    of CPU), while jsonschema's IRI formats still accept and refuse exactly what they do without tdkit?"""
    found = {}
    for name, first in (("tdkit", "import tdkit"), ("plain", "")):
        done = subprocess.run(
            [sys.executable, "-c", IRI.format(first=first)],
            capture_output=True,
            text=True,
            check=True,
        )
        found[name] = json.loads(done.stdout)
    assert found["tdkit"][0] is False and found["plain"][0] is True
    assert found["tdkit"][1] == found["plain"][1] and True in found["plain"][1]
    assert False in found["plain"][1]
    assert found["tdkit"][2] is True  # compiled once an IRI was checked
