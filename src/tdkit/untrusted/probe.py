"""Call the student API on grader-chosen inputs and write plain artifacts.

Runs inside the student's kernel (in the sandbox when grading). It imports neither
``reference`` nor ``grader_tests``: it only records what the student's functions do, as JSON
and ``.npz`` (never pickles). Every function is tried even when another one fails.

Each function is judged on its own: while one is probed, the other evaluation functions it
may call (``predict``, ``accuracy``, ``confusion_matrix``) are grader stand-ins built on
``tdkit.core.inputs.grader_predictions``, grader-chosen predictions that the trusted side
recomputes from the same rows (no solution code needs to reach the sandbox). ``accuracy`` and
``confusion_matrix`` are run both ways, as written (with the student's own functions) and
alone (with the stand-ins); the trusted side judges the run as written unless a function it
called fails its own checks. What a function leaves changed in its arguments (weights, mode, hooks of the model,
the dataset's format) is recorded as ``side_effects``.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdkit.core.groups import BY_NAME, GROUPS
from tdkit.core.inputs import (
    N_CLASSES,
    GradingData,
    GradingInputs,
    eval_model,
    graded_training,
    grader_predictions,
)

ProbeFunction = Callable[[Mapping[str, Any], GradingData, Path], dict[str, Any]]
PROBES: dict[str, ProbeFunction] = {}  # group -> its probe, filled by @probes below


def probes(group: str) -> Callable[[ProbeFunction], ProbeFunction]:
    """Register the decorated function as the probe of ``group``, a name of ``CHECK_GROUPS``."""

    def register(function: ProbeFunction) -> ProbeFunction:
        PROBES[BY_NAME[group].name] = function
        return function

    return register


class TrainingTrace:
    """Records what happens to the model and optimizer handed to ``train``.

    Events: ``F`` forward, ``B`` backward (a gradient reaches ``conv1.weight``), ``Z`` an
    explicit zero_grad, and at each ``optimizer.step()`` the state of the gradient it uses:
    ``S`` exactly the last backward's, ``A`` accumulated over several backwards, ``0`` none.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.events: list[str] = []
        self.input_sums: list[float] = []
        self.batch_sizes: list[int] = []
        self._last_grad: torch.Tensor | None = None
        conv1: Any = model.conv1  # the student's network: its layers are whatever the student built
        watched: torch.Tensor = conv1.weight
        self._handles = [
            model.register_forward_pre_hook(self._on_forward),
            watched.register_hook(self._on_backward),
            optimizer.register_step_pre_hook(lambda _opt, _a, _k: self._on_step(watched)),
        ]
        self._wrap_zero_grad(optimizer)
        self._wrap_zero_grad(model)

    def _wrap_zero_grad(self, owner: Any) -> None:
        original = owner.zero_grad

        def zero_grad(*args: Any, **kwargs: Any) -> Any:
            self.events.append("Z")
            return original(*args, **kwargs)

        owner.zero_grad = zero_grad

    def _on_forward(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self.events.append("F")
        x = args[0] if args else None
        if isinstance(x, torch.Tensor):
            self.input_sums.append(float(x.detach().double().sum()))
            self.batch_sizes.append(int(x.shape[0]) if x.dim() == 4 else 1)

    def _on_backward(self, grad: torch.Tensor) -> None:
        self.events.append("B")
        self._last_grad = grad.detach().clone()

    def _on_step(self, watched: torch.Tensor) -> None:
        grad = watched.grad
        if grad is None or not bool(grad.any()):
            self.events.append("0")
        elif self._last_grad is not None and torch.allclose(
            grad, self._last_grad, rtol=1e-5, atol=1e-8
        ):
            self.events.append("S")
        else:
            self.events.append("A")

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _floats(values: Any) -> list[float] | None:
    """A list of floats from whatever sequence the student returned, or None."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _describe(value: Any) -> dict[str, Any]:
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
        described["items"] = sorted({_item_kind(v) for v in value})
    return described


def _item_kind(value: Any) -> str:
    """What one element of a returned list is: "number", "tensor", "tensor_grad" or "other"."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "number"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return "tensor_grad" if value.requires_grad else "tensor"
    return "other"


# --------------------------------------------------------------------------------------------
# What a function leaves changed in its arguments


def _hook_count(model: torch.nn.Module) -> int:
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


def _model_state(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": _hook_count(model),
    }


def _model_changes(model: torch.nn.Module, before: Mapping[str, Any]) -> list[str]:
    after = _model_state(model)
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


def _fresh(dataset: Any) -> Any:
    """A new ``Dataset`` object over the same rows: what one call does to it stays with it."""
    return dataset.with_format(None)


def _dataset_state(dataset: Any) -> tuple[Any, ...]:
    return (
        dict(dataset.format),
        dataset._fingerprint,
        dataset.num_rows,
        tuple(dataset.column_names),
    )


@contextlib.contextmanager
def _watch(
    side_effects: list[str], model: torch.nn.Module | None = None, dataset: Any = None
) -> Iterator[None]:
    """Appends to ``side_effects`` what the block changed in ``model`` and ``dataset``."""
    model_before = _model_state(model) if model is not None else None
    dataset_before = _dataset_state(dataset) if dataset is not None else None
    try:
        yield
    finally:
        if model is not None and model_before is not None:
            side_effects.extend(
                c for c in _model_changes(model, model_before) if c not in side_effects
            )
        if (
            dataset is not None
            and _dataset_state(dataset) != dataset_before
            and "dataset" not in side_effects
        ):
            side_effects.append("dataset")


# --------------------------------------------------------------------------------------------
# Stand-ins: the grader's version of the functions the probed one may call


def _labels(dataset: Any) -> np.ndarray:
    return np.asarray(
        dataset.select_columns(["label"]).with_format("numpy")[:]["label"], dtype=np.int64
    )


def _stand_in_predict(
    model: Any = None, dataset: Any = None, *args: Any, **kwargs: Any
) -> np.ndarray:
    return grader_predictions(dataset)


def _stand_in_accuracy(model: Any = None, dataset: Any = None, *args: Any, **kwargs: Any) -> float:
    labels = _labels(dataset)
    return float(np.mean(grader_predictions(dataset) == labels)) if len(labels) else 0.0


def _stand_in_confusion_matrix(
    model: Any = None, dataset: Any = None, *args: Any, **kwargs: Any
) -> np.ndarray:
    index = _labels(dataset) * N_CLASSES + grader_predictions(dataset)
    return (
        np.bincount(index, minlength=N_CLASSES * N_CLASSES)
        .reshape(N_CLASSES, N_CLASSES)
        .astype(np.int64)
    )


STAND_INS: dict[str, Callable[..., Any]] = {
    "predict": _stand_in_predict,
    "accuracy": _stand_in_accuracy,
    "confusion_matrix": _stand_in_confusion_matrix,
}
_MISSING = object()


def _counted(name: str, stand_in: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    def called(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return stand_in(*args, **kwargs)

    return called


@contextlib.contextmanager
def stand_ins(
    namespace: Mapping[str, Any], probed: str, calls: list[str] | None = None
) -> Iterator[None]:
    """While ``probed`` runs, the other evaluation functions it looks up are the grader's
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
            for name, stand_in in STAND_INS.items():
                if name != probed:
                    saved.append((home, name, home.get(name, _MISSING)))
                    home[name] = _counted(name, stand_in, calls)
        yield
    finally:
        for home, name, value in reversed(saved):
            if value is _MISSING:
                home.pop(name, None)
            else:
                home[name] = value


def _save_arrays(out_dir: Path, group: str, arrays: Mapping[str, np.ndarray]) -> None:
    # Object arrays would need pickles: the artifact reader refuses them, so never write one.
    plain = {k: v for k, v in arrays.items() if v.dtype != object}
    np.savez(out_dir / f"{group}.npz", allow_pickle=False, **plain)


@probes("train")
def _probe_train(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    inputs = data.inputs
    model, optimizer = graded_training(ns["ConvNet"], inputs)
    trace = TrainingTrace(model, optimizer)
    side_effects: list[str] = []
    dataset = _fresh(data.train)
    try:
        with stand_ins(ns, "train"), _watch(side_effects, dataset=dataset):
            returned = ns["train"](model, optimizer, dataset, inputs.train_epochs)
    finally:
        trace.remove()
    weights = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    _save_arrays(out, "train", weights)
    return {
        "returned": _describe(returned),
        "loss_history": _floats(returned) if returned is not None else None,
        "events": "".join(trace.events),
        "input_sums": trace.input_sums,
        "batch_sizes": trace.batch_sizes,
        "side_effects": side_effects,
    }


@probes("learning_curve")
def _probe_learning_curve(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    import matplotlib.figure
    import matplotlib.pyplot as plt

    with stand_ins(ns, "plot_learning_curve"):
        figure = ns["plot_learning_curve"](list(data.inputs.curve))
    result: dict[str, Any] = {"returned": _describe(figure), "axes": []}
    if isinstance(figure, matplotlib.figure.Figure):
        for ax in figure.axes:
            result["axes"].append(
                {
                    "xlabel": ax.get_xlabel(),
                    "ylabel": ax.get_ylabel(),
                    "title": ax.get_title(),
                    "lines": [
                        {"x": _floats(line.get_xdata()), "y": _floats(line.get_ydata())}
                        for line in ax.get_lines()
                    ],
                }
            )
        plt.close(figure)
    return result


def _probe_array_result(
    value: Any, group: str, out: Path, extra: Mapping[str, np.ndarray] | None = None
) -> dict[str, Any]:
    result = {"returned": _describe(value)}
    array = _array(value)
    arrays = {**(extra or {}), "value": array} if array.dtype != object else dict(extra or {})
    if arrays:
        _save_arrays(out, group, arrays)
    return result


@probes("predict")
def _probe_predict(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    model = eval_model(ns["ConvNet"], data.inputs)
    side_effects: list[str] = []
    dataset = _fresh(data.eval)
    with stand_ins(ns, "predict"), _watch(side_effects, model, dataset):
        value = ns["predict"](model, dataset)
    subsets = {}
    with stand_ins(ns, "predict"):
        for n, subset in zip(data.inputs.accuracy_subsets, data.eval_subsets):
            subsets[f"subset_{n}"] = _array(ns["predict"](model, _fresh(subset)))
    plain = {k: v for k, v in subsets.items() if v.dtype != object}
    return {**_probe_array_result(value, "predict", out, plain), "side_effects": side_effects}


def _number(value: Any) -> float | None:
    number = _floats([value]) if not isinstance(value, (str, bytes)) else None
    return number[0] if number else None


def _attempt(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """``call()`` or, when it raises, None and the error's last line (for the feedback)."""
    try:
        return call(), None
    except Exception as error:  # noqa: BLE001 - reported to the student, never fatal to the probe
        return None, traceback.format_exception_only(type(error), error)[-1].strip()[:500]


def _run_twice(
    ns: Mapping[str, Any], data: GradingData, function: str
) -> tuple[dict[str, Any], dict[str, list[Any] | None]]:
    """``function`` on the evaluation rows and their subsets, twice on a fresh model: as written
    (with the student's own ``predict``...) and alone (the other functions being the grader's).

    Which run is judged is the trusted side's choice: it knows whether the student's own
    functions that this one called pass their checks. Returns each run's record (what it
    returned, its error, what it changed) and its values; when both runs fail, the error of
    the run alone propagates (nothing to judge).
    """
    records: dict[str, Any] = {}
    values: dict[str, list[Any] | None] = {}
    calls: list[str] = []
    for run in ("written", "alone"):
        model = eval_model(ns["ConvNet"], data.inputs)
        side_effects: list[str] = []

        def call(
            run: str = run, model: torch.nn.Module = model, side_effects: list[str] = side_effects
        ) -> list[Any]:
            dataset = _fresh(data.eval)
            replaced = (
                stand_ins(ns, function, calls) if run == "alone" else contextlib.nullcontext()
            )
            with replaced:
                with _watch(side_effects, model, dataset):
                    first = ns[function](model, dataset)
                rest = [ns[function](model, _fresh(subset)) for subset in data.eval_subsets]
            return [first, *rest]

        if run == "alone" and records["written"]["error"] is not None:
            got, error = call(), None
        else:
            got, error = _attempt(call)
        values[run] = got
        records[run] = {
            "returned": _describe(got[0]) if got is not None else None,
            "error": error,
            "side_effects": side_effects if error is None else [],
        }
    records["alone"]["stand_ins_called"] = sorted(set(calls))
    return records, values


@probes("accuracy")
def _probe_accuracy(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    runs, values = _run_twice(ns, data, "accuracy")
    for run, got in values.items():
        runs[run]["values"] = [_number(v) for v in got] if got is not None else None
    return {"runs": runs}


@probes("confusion_matrix")
def _probe_confusion_matrix(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    runs, values = _run_twice(ns, data, "confusion_matrix")
    arrays = {}
    for run, got in values.items():
        try:
            array = _array(got[0]) if got is not None else None
        except Exception:  # noqa: BLE001 - a value NumPy cannot read is judged by its description
            array = None
        if array is not None and array.dtype != object:
            arrays[run] = array
    if arrays:
        _save_arrays(out, "confusion_matrix", arrays)
    return {"runs": runs}


@probes("per_class_accuracy")
def _probe_per_class_accuracy(
    ns: Mapping[str, Any], data: GradingData, out: Path
) -> dict[str, Any]:
    given = data.confusion.copy()
    with stand_ins(ns, "per_class_accuracy"):
        value = ns["per_class_accuracy"](given)
    side_effects = [] if np.array_equal(given, data.confusion) else ["confusion"]
    return {**_probe_array_result(value, "per_class_accuracy", out), "side_effects": side_effects}


@probes("activation_maps")
def _probe_activation_maps(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    model = eval_model(ns["ConvNet"], data.inputs)
    images = data.images.clone()
    side_effects: list[str] = []
    with stand_ins(ns, "activation_maps"), _watch(side_effects, model):
        value = ns["activation_maps"](model, images)
    if not torch.equal(images, data.images):
        side_effects.append("images")
    return {**_probe_array_result(value, "activation_maps", out), "side_effects": side_effects}


if set(PROBES) != set(GROUPS):  # a group without a probe would fail every submission's checks
    raise ImportError(f"check groups without a probe: {sorted(set(GROUPS) - set(PROBES))}")


def run_probe(
    namespace: Mapping[str, Any],
    out_dir: str | Path,
    groups: Iterable[str] = GROUPS,
    inputs: GradingInputs | None = None,
) -> dict[str, str]:
    """Probe each group and write ``<group>.json`` (+ ``<group>.npz``); returns group -> status."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = GradingData(inputs or GradingInputs())
    statuses = {}
    for group in groups:
        function = BY_NAME[group].function
        record: dict[str, Any]
        if not callable(namespace.get(function)):
            record = {"status": "missing", "function": function}
        else:
            try:
                record = {
                    "status": "ok",
                    "function": function,
                    **PROBES[group](namespace, data, out),
                }
            except BaseException as error:
                if isinstance(error, KeyboardInterrupt):
                    raise
                record = {
                    "status": "error",
                    "function": function,
                    "error": traceback.format_exc(limit=8),
                }
        (out / f"{group}.json").write_text(json.dumps(record, ensure_ascii=False))
        statuses[group] = record["status"]
    return statuses
