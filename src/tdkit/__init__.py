"""tdkit: release, grade and give feedback on a course's notebook labs, built on nbgrader."""

from __future__ import annotations

import importlib.util
import sys
import types

__version__ = "0.1.0"


def _defer_iri_grammar() -> None:
    """jsonschema, which nbformat imports, imports ``rfc3987_syntax``, which compiles an Earley grammar
    as it loads: 2.7 s of CPU in every process that reads a notebook. Its one function is
    what jsonschema takes; here the grammar is compiled on that function's first call instead (no
    notebook schema checks an IRI), and the checks it does are unchanged."""
    if "rfc3987_syntax" in sys.modules:
        return
    spec = importlib.util.find_spec("rfc3987_syntax")
    if spec is None or spec.submodule_search_locations is None:
        return
    stub = types.ModuleType("rfc3987_syntax")
    stub.__path__ = list(spec.submodule_search_locations)  # its own modules load from there

    def is_valid_syntax(term: str, value: str) -> bool:
        from rfc3987_syntax.syntax_helpers import is_valid_syntax as compiled

        return bool(compiled(term, value))

    def __getattr__(name: str) -> object:  # the package's other names load it whole
        if name.startswith("__"):  # probes of a module (__file__, __wrapped__...) load nothing
            raise AttributeError(name)
        return getattr(importlib.import_module("rfc3987_syntax.syntax_helpers"), name)

    stub.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stub.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["rfc3987_syntax"] = stub


_defer_iri_grammar()
