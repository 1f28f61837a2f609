"""Call the student API on grader-chosen inputs and write plain artifacts.

Runs inside the student's kernel (in the sandbox when grading). It imports neither
``reference`` nor ``grader_tests``: it only records what the student's functions do, as JSON
and ``.npz`` (never pickles). Every function is tried even when another one fails.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdkit.inputs import GradingData, GradingInputs, eval_model, train_model

GROUPS = (
    "train",
    "learning_curve",
    "predict",
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "activation_maps",
)
# The student function each group calls.
FUNCTIONS = {
    "train": "train",
    "learning_curve": "plot_learning_curve",
    "predict": "predict",
    "accuracy": "accuracy",
    "confusion_matrix": "confusion_matrix",
    "per_class_accuracy": "per_class_accuracy",
    "activation_maps": "activation_maps",
}


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
        watched = model.conv1.weight
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
        elif self._last_grad is not None and torch.allclose(grad, self._last_grad, rtol=1e-5, atol=1e-8):
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
    return described


def _save_arrays(out_dir: Path, group: str, arrays: Mapping[str, np.ndarray]) -> None:
    # Object arrays would need pickles: the artifact reader refuses them, so never write one.
    plain = {k: v for k, v in arrays.items() if v.dtype != object}
    np.savez(out_dir / f"{group}.npz", **plain)


def _probe_train(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    inputs = data.inputs
    model = train_model(ns["ConvNet"], inputs)
    optimizer = torch.optim.SGD(model.parameters(), lr=inputs.train_lr)
    trace = TrainingTrace(model, optimizer)
    try:
        returned = ns["train"](model, optimizer, data.train, inputs.train_epochs)
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
    }


def _probe_learning_curve(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    import matplotlib.figure
    import matplotlib.pyplot as plt

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


def _probe_array_result(value: Any, group: str, out: Path) -> dict[str, Any]:
    result = {"returned": _describe(value)}
    array = _array(value)
    if array.dtype != object:
        _save_arrays(out, group, {"value": array})
    return result


def _probe_predict(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    value = ns["predict"](eval_model(ns["ConvNet"], data.inputs), data.eval)
    return _probe_array_result(value, "predict", out)


def _number(value: Any) -> float | None:
    number = _floats([value]) if not isinstance(value, (str, bytes)) else None
    return number[0] if number else None


def _probe_accuracy(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    model = eval_model(ns["ConvNet"], data.inputs)
    value = ns["accuracy"](model, data.eval)
    subsets = [_number(ns["accuracy"](model, subset)) for subset in data.eval_subsets]
    return {"returned": _describe(value), "value": _number(value), "subset_values": subsets}


def _probe_confusion_matrix(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    value = ns["confusion_matrix"](eval_model(ns["ConvNet"], data.inputs), data.eval)
    return _probe_array_result(value, "confusion_matrix", out)


def _probe_per_class_accuracy(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    value = ns["per_class_accuracy"](data.confusion.copy())
    return _probe_array_result(value, "per_class_accuracy", out)


def _probe_activation_maps(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    value = ns["activation_maps"](eval_model(ns["ConvNet"], data.inputs), data.images.clone())
    return _probe_array_result(value, "activation_maps", out)


PROBES: dict[str, Callable[[Mapping[str, Any], GradingData, Path], dict[str, Any]]] = {
    "train": _probe_train,
    "learning_curve": _probe_learning_curve,
    "predict": _probe_predict,
    "accuracy": _probe_accuracy,
    "confusion_matrix": _probe_confusion_matrix,
    "per_class_accuracy": _probe_per_class_accuracy,
    "activation_maps": _probe_activation_maps,
}


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
        function = FUNCTIONS[group]
        record: dict[str, Any]
        if not callable(namespace.get(function)):
            record = {"status": "missing", "function": function}
        else:
            try:
                record = {"status": "ok", "function": function, **PROBES[group](namespace, data, out)}
            except BaseException as error:
                if isinstance(error, KeyboardInterrupt):
                    raise
                record = {"status": "error", "function": function, "error": traceback.format_exc(limit=8)}
        (out / f"{group}.json").write_text(json.dumps(record, ensure_ascii=False))
        statuses[group] = record["status"]
    return statuses
