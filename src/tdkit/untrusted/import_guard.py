"""Kernel side of the course environment, installed in the kernel before the notebook's cells.

The rule (docs/instructor.md, "The course environment"):

- A top-level ``import x`` / ``from x import y`` statement of a cell (a direct statement of the
  cell, not inside ``try``, ``if`` or a function) whose module is outside the environment binds
  a placeholder instead of stopping the cell: the rest of the cell and of the notebook run, and
  the placeholder raises a French ``ModuleNotFoundError`` naming the module only when used
  (called, indexed, an attribute read).
- Any other import of such a module by the notebook's own code (inside a function, a ``try``,
  ``__import__``) raises that error at once, even when the module happens to be installed
  here: what a student without the package gets at home. ``try: ... except ImportError`` works
  as it would there.
- Each such module is announced on stderr with the ``[tdkit] Le module `x` ...`` line that the
  runner and ``tdkit check`` collect for the reports. Nothing is ever installed.

This is fidelity, not security: a notebook can undo it (the sandbox is the security boundary,
and every score is recomputed outside it). Standard library only: it runs in every kernel.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from tdkit.core.config import ENVIRONMENT_ENV

KERNEL_PACKAGE = "tdkit"  # always importable: the grader's own cells (hidden tests, probe) use it
# Run by IPython at kernel start, before any cell; binds no name in the notebook's namespace.
KERNEL_ARGUMENTS = (
    "--IPKernelApp.exec_lines=__import__('tdkit.untrusted.import_guard').untrusted.import_guard.install()",
    # The kernel's own warnings (TCP without encryption, between two processes of one sandbox)
    # are not the student's doing: they reached students' and instructors' terminals as noise.
    "--IPKernelApp.log_level=ERROR",
)
MARKER = "[tdkit] "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_MARKED = re.compile(r"\[tdkit\] Le module `(" + _NAME.pattern + r")` n'est pas disponible")
MAX_RECORDED = 20  # modules kept per submission: a notebook could print the marker at will


def top_level(module: str) -> str:
    return module.partition(".")[0]


def missing_module_note(module: str, packages: Iterable[str]) -> str:
    """The French sentence every report, check and placeholder uses."""
    return (
        f"Le module `{module}` n'est pas disponible dans l'environnement de correction "
        f"(paquets disponibles : {', '.join(packages)}, et leurs dépendances)."
    )


def module_names(names: object) -> list[str]:
    """The valid module names of the list ``names`` (untrusted), each once, in order, at most ``MAX_RECORDED``."""
    found: list[str] = []
    for name in names if isinstance(names, list) else []:
        if (
            isinstance(name, str)
            and _NAME.fullmatch(name)
            and name not in found
            and len(found) < MAX_RECORDED
        ):
            found.append(name)
    return found


def recorded_modules(texts: Iterable[str]) -> list[str]:
    """The modules announced in ``texts`` (cell outputs)."""
    return module_names([module for text in texts for module in _MARKED.findall(text)])


def notebook_outputs(nb: Mapping[str, Any]) -> list[str]:
    """The stream texts of every code cell of an executed notebook."""
    texts = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                texts.append(str(output.get("text", "")))
    return texts


class _Guard:
    def __init__(self, packages: list[str], modules: Iterable[str]) -> None:
        self.packages = packages
        self.modules = set(modules) | set(sys.stdlib_module_names) | {KERNEL_PACKAGE}
        self.original_import = builtins.__import__

    def allows(self, module: str) -> bool:
        return top_level(module) in self.modules

    def note(self, module: str) -> str:
        return missing_module_note(top_level(module), self.packages)

    def announce(self, module: str, detail: str) -> None:
        print(f"{MARKER}{self.note(module)} {detail}", file=sys.stderr, flush=True)

    def guarded_import(
        self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        # Only the notebook's own code (its cells and the functions they define) is held to it.
        own = isinstance(globals, dict) and globals.get("__name__") == "__main__"
        if own and level == 0 and not self.allows(name):
            self.announce(name, "Import refusé.")
            raise ModuleNotFoundError(self.note(name), name=top_level(name))
        return self.original_import(name, globals, locals, fromlist, level)


_guard: _Guard | None = None


class Placeholder:
    """Stands for a name imported from a module outside the environment; any use raises."""

    __slots__ = ("_tdkit_module", "_tdkit_name")

    def __init__(self, module: str, name: str) -> None:
        object.__setattr__(self, "_tdkit_module", module)
        object.__setattr__(self, "_tdkit_name", name)

    def _fail(self) -> NoReturn:
        module = self._tdkit_module
        note = (
            _guard.note(module)
            if _guard is not None
            else missing_module_note(top_level(module), [])
        )
        raise ModuleNotFoundError(
            f"{note} `{self._tdkit_name}` (importé de `{module}`) ne peut donc pas servir ici : écrivez ce code "
            "avec les paquets du cours, ou demandez l'ajout du paquet à td-requirements.txt.",
            name=top_level(module),
        )

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith(("__", "_repr_", "_ipython_")):
            raise AttributeError(attribute)  # Python and IPython probe these: absent, not an error
        self._fail()

    def __setattr__(self, attribute: str, value: Any) -> None:
        self._fail()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._fail()

    def __getitem__(self, key: Any) -> Any:
        self._fail()

    def __iter__(self) -> Any:
        self._fail()

    def __enter__(self) -> Any:
        self._fail()

    def __exit__(self, *exc: object) -> None:
        self._fail()

    def __repr__(self) -> str:
        return f"<{self._tdkit_name} : module `{top_level(self._tdkit_module)}` indisponible à la correction>"


def placeholder(module: str, name: str) -> Placeholder:
    """What a top-level import of ``module`` outside the environment binds to ``name``."""
    if _guard is not None and name == "*":
        _guard.announce(
            module, f"`from {module} import *` n'a rien importé ; le notebook continue."
        )
    elif _guard is not None:
        _guard.announce(
            module,
            f"Votre import de `{name}` est remplacé : le notebook continue, et seul le "
            f"code qui utilise `{name}` échouera.",
        )
    return Placeholder(module, name)


def _placeholder_call(module: str, name: str) -> ast.expr:
    # __import__("tdkit.untrusted.import_guard") returns the top package: walk down to the module.
    package = ast.Call(
        ast.Name("__import__", ast.Load()), [ast.Constant("tdkit.untrusted.import_guard")], []
    )
    guard = ast.Attribute(
        ast.Attribute(package, "untrusted", ast.Load()), "import_guard", ast.Load()
    )
    return ast.Call(
        ast.Attribute(guard, "placeholder", ast.Load()),
        [ast.Constant(module), ast.Constant(name)],
        [],
    )


class TopLevelImports(ast.NodeTransformer):
    """IPython AST transformer: a cell's direct import statements of modules outside the
    environment become assignments of placeholders; every other statement is left as is."""

    def __init__(self, guard: _Guard) -> None:
        self.guard = guard

    def visit_Module(self, node: ast.Module) -> ast.Module:
        body: list[ast.stmt] = []
        for statement in node.body:
            body += self._rewrite(statement)
        node.body = body
        return ast.fix_missing_locations(node)

    def _rewrite(self, statement: ast.stmt) -> list[ast.stmt]:
        if isinstance(statement, ast.Import):
            kept = [a for a in statement.names if self.guard.allows(a.name)]
            out: list[ast.stmt] = [ast.Import(kept)] if kept else []
            for alias in statement.names:
                if alias not in kept:
                    bound = alias.asname or top_level(alias.name)
                    out.append(
                        ast.Assign(
                            [ast.Name(bound, ast.Store())], _placeholder_call(alias.name, bound)
                        )
                    )
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            if self.guard.allows(statement.module):
                return [statement]
            out = []
            for alias in statement.names:
                if alias.name == "*":
                    out.append(ast.Expr(_placeholder_call(statement.module, "*")))
                else:
                    bound = alias.asname or alias.name
                    out.append(
                        ast.Assign(
                            [ast.Name(bound, ast.Store())],
                            _placeholder_call(statement.module, bound),
                        )
                    )
        else:
            return [statement]
        return [ast.copy_location(new, statement) for new in out]


def install() -> None:
    """Hold the notebook's imports to ``$TDKIT_ENVIRONMENT`` (run once, at kernel start)."""
    global _guard
    spec = json.loads(os.environ[ENVIRONMENT_ENV])
    _guard = _Guard(list(spec["packages"]), spec["modules"])
    builtins.__import__ = _guard.guarded_import
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.ast_transformers.append(TopLevelImports(_guard))
