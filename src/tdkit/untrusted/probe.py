"""The probe's kit: call a student function on grader-chosen inputs and record what it does.

Runs inside the student's kernel (in the sandbox when grading). An assignment's probe
(``grader_tests/<name>/probe.py``, copied into each sandbox job with the files it names) registers
one function per check group with :class:`Probes`; :func:`run_probe` imports it and calls each on
the kernel's namespace, and each records what the student's function returned, raised and
changed, as JSON and ``.npz`` (never pickles). Every function is tried even when another one fails.
Nothing here, nor in the assignment's probe, imports the checks, the oracle or the reference.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import numbers
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdkit.core.assignment import PROBE_MODULE, Assignment, package_name

ProbeFunction = Callable[[Mapping[str, Any], Any, Path], dict[str, Any]]


class Probes:
    """An assignment's probes, one per check group: ``@PROBES("train")`` registers one.

    ``context()`` builds what every probe is given besides the namespace and its output folder
    (the grader's inputs); it runs once per probe run.
    """

    def __init__(self, context: Callable[[], Any]) -> None:
        self.context = context
        self.functions: dict[str, ProbeFunction] = {}

    def __call__(self, group: str) -> Callable[[ProbeFunction], ProbeFunction]:
        def register(function: ProbeFunction) -> ProbeFunction:
            self.functions[group] = function
            return function

        return register


def floats(values: Any) -> list[float] | None:
    """A list of floats from whatever sequence the student returned, or None."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def describe(value: Any) -> dict[str, Any]:
    """Type, shape and dtype of a returned value, for messages."""
    described: dict[str, Any] = {"type": f"{type(value).__module__}.{type(value).__qualname__}"}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        described["shape"] = list(value.shape)
        described["dtype"] = str(value.dtype)
    # What the visible tests ask with isinstance: judged on the value itself, never converted.
    described["ndarray"] = isinstance(value, np.ndarray)
    described["tensor"] = isinstance(value, torch.Tensor)
    described["float"] = isinstance(value, float)
    described["list"] = isinstance(value, list)
    if isinstance(value, list):
        described["items"] = sorted({item_kind(v) for v in value})
    return described


def item_kind(value: Any) -> str:
    """What one element of a returned list is: "number", "tensor", "tensor_grad" or "other"."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "number"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return "tensor_grad" if value.requires_grad else "tensor"
    return "other"


# --------------------------------------------------------------------------------------------
# What a function leaves changed in its arguments


def hook_count(model: torch.nn.Module) -> int:
    hooks = 0
    for module in model.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            hooks += len(getattr(module, name, {}) or {})
    return hooks


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": hook_count(model),
    }


def model_changes(model: torch.nn.Module, before: Mapping[str, Any]) -> list[str]:
    after = model_state(model)
    changes = []
    weights = before["weights"]
    if set(after["weights"]) != set(weights) or any(
        not torch.equal(after["weights"][k], v) for k, v in weights.items()
    ):
        changes.append("weights")
    if after["modes"] != before["modes"]:
        changes.append("mode")
    if after["requires_grad"] != before["requires_grad"]:
        changes.append("requires_grad")
    if after["hooks"] > before["hooks"]:
        changes.append("hooks")
    return changes


def fresh(dataset: Any) -> Any:
    """A new ``Dataset`` object over the same rows: what one call does to it stays with it."""
    return dataset.with_format(None)


def dataset_state(dataset: Any) -> tuple[Any, ...]:
    return (
        dict(dataset.format),
        dataset._fingerprint,
        dataset.num_rows,
        tuple(dataset.column_names),
    )


@contextlib.contextmanager
def watch(
    side_effects: list[str], model: torch.nn.Module | None = None, dataset: Any = None
) -> Iterator[None]:
    """Appends to ``side_effects`` what the block changed in ``model`` and ``dataset``."""
    model_before = model_state(model) if model is not None else None
    dataset_before = dataset_state(dataset) if dataset is not None else None
    try:
        yield
    finally:
        if model is not None and model_before is not None:
            side_effects.extend(
                c for c in model_changes(model, model_before) if c not in side_effects
            )
        if (
            dataset is not None
            and dataset_state(dataset) != dataset_before
            and "dataset" not in side_effects
        ):
            side_effects.append("dataset")


_MISSING = object()


def counted(name: str, stand_in: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    def called(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return stand_in(*args, **kwargs)

    return called


@contextlib.contextmanager
def stand_ins(
    namespace: Mapping[str, Any],
    probed: str,
    replacements: Mapping[str, Callable[..., Any]],
    calls: list[str] | None = None,
) -> Iterator[None]:
    """While ``probed`` runs, the other functions of ``replacements`` it looks up are the grader's
    (each call's name appended to ``calls``)."""
    calls = [] if calls is None else calls
    homes = [namespace]
    own_globals = getattr(namespace.get(probed), "__globals__", None)
    if isinstance(own_globals, dict) and own_globals is not namespace:
        homes.append(own_globals)
    saved: list[tuple[Any, str, Any]] = []
    try:
        for home in homes:
            if not isinstance(home, dict):
                continue
            for name, stand_in in replacements.items():
                if name != probed:
                    saved.append((home, name, home.get(name, _MISSING)))
                    home[name] = counted(name, stand_in, calls)
        yield
    finally:
        for home, name, value in reversed(saved):
            if value is _MISSING:
                home.pop(name, None)
            else:
                home[name] = value


def save_arrays(out_dir: Path, group: str, arrays: Mapping[str, np.ndarray]) -> None:
    # Object arrays would need pickles: the artifact reader refuses them, so never write one.
    plain = {k: v for k, v in arrays.items() if v.dtype != object}
    np.savez(out_dir / f"{group}.npz", allow_pickle=False, **plain)


def array_result(
    value: Any, group: str, out: Path, extra: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    result = {"returned": describe(value)}
    array = as_array(value)
    arrays = {**(extra or {}), "value": array} if array.dtype != object else dict(extra or {})
    if arrays:
        save_arrays(out, group, arrays)
    return result


def number(value: Any) -> float | None:
    number = floats([value]) if not isinstance(value, (str, bytes)) else None
    return number[0] if number else None


def attempt(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """``call()`` or, when it raises, None and the error's last line (for the feedback)."""
    try:
        return call(), None
    except Exception as error:  # noqa: BLE001 - reported to the student, never fatal to the probe
        return None, traceback.format_exception_only(type(error), error)[-1].strip()[:500]


def assignment_probes(assignment: str) -> tuple[Assignment, Probes]:
    """The assignment's definition and its registered probes (``grader_tests.<name>``, importable)."""
    package = package_name(assignment)
    definition = importlib.import_module(f"{package}.assignment").ASSIGNMENT
    registered = importlib.import_module(f"{package}.{PROBE_MODULE}").PROBES
    left_out = sorted(set(definition.group_names) - set(registered.functions))
    if left_out:  # a group without a probe would fail every submission's checks
        raise ImportError(f"{package}.{PROBE_MODULE}: check groups without a probe: {left_out}")
    return definition, registered


def run_probe(
    namespace: Mapping[str, Any],
    out_dir: str | Path,
    assignment: str,
    groups: Iterable[str] | None = None,
    context: Any = None,
) -> dict[str, str]:
    """Probe each group of ``assignment`` (or of ``groups``) and write ``<group>.json`` (+ ``.npz``).

    ``context``: the probes' inputs, else the assignment's own. Returns group -> status."""
    definition, registered = assignment_probes(assignment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = registered.context() if context is None else context
    statuses = {}
    for name in definition.group_names if groups is None else groups:
        group = definition.group(name)
        function = group.function if group is not None else name
        record: dict[str, Any]
        if not callable(namespace.get(function)):
            record = {"status": "missing", "function": function}
        else:
            try:
                record = {
                    "status": "ok",
                    "function": function,
                    **registered.functions[name](namespace, data, out),
                }
            except BaseException as error:
                if isinstance(error, KeyboardInterrupt):
                    raise
                record = {
                    "status": "error",
                    "function": function,
                    "error": traceback.format_exc(limit=8),
                }
        (out / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False))
        statuses[name] = record["status"]
    return statuses
