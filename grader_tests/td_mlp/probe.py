"""td_mlp's probe: call the student's functions on grader-chosen inputs and write plain artifacts.

Runs inside the student's kernel (in the sandbox when grading), with ``inputs.py`` beside it
(``assignment.py`` lists it) and tdkit's probe kit. It imports neither ``reference`` nor the
checks: it records what the student's functions return, raise and change, as JSON and ``.npz``
(never pickles), and the trusted side recomputes everything with the reference.

``train_epochs`` and ``evaluate`` get the grader's own network (``inputs.grader_network``), not
the student's ``MLP``: each function is judged on its own, and a wrong class is charged once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdkit.untrusted.probe import (
    Probes,
    as_array,
    attempt,
    describe,
    floats,
    number,
    save_arrays,
    watch,
)

from .inputs import GradingData, GradingInputs

PROBES = Probes(lambda: GradingData(GradingInputs()))
TRAIN_TENSORS = ("train_x", "train_y", "val_x", "val_y")


@PROBES("normalize")
def _probe_normalize(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    """Called on the uint8 images and on the same images as float64, with float64 statistics
    (as the notebook computes them)."""
    arrays: dict[str, np.ndarray] = {}
    calls: dict[str, Any] = {}
    for kind, images in (("uint8", data.images), ("float64", data.images.astype(np.float64))):
        before = {"images": images, "mean": data.mean, "std": data.std}
        given = {name: array.copy() for name, array in before.items()}
        value, error = attempt(lambda given=given: ns["normalize"](*given.values()))
        changed = [name for name in before if not np.array_equal(given[name], before[name])]
        calls[kind] = {
            "returned": describe(value) if error is None else None,
            "error": error,
            "side_effects": changed,
        }
        if error is None:
            array = as_array(value)
            if array.dtype != object:
                arrays[kind] = array
    if arrays:
        save_arrays(out, "normalize", arrays)
    return {"calls": calls}


def _shapes(model: Any) -> list[list[int]] | None:
    if not isinstance(model, torch.nn.Module):
        return None
    return [list(p.shape) for p in model.parameters()]


@PROBES("model")
def _probe_model(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    """``MLP()`` and ``MLP(hidden=..., n_classes=...)``: their parameters' shapes, and the second
    one's parameters and logits on fixed rows (the trusted side runs the reference with them)."""
    inputs = data.inputs
    default = ns["MLP"]()
    torch.manual_seed(inputs.seed)
    custom = ns["MLP"](hidden=inputs.hidden, n_classes=inputs.n_classes)
    arrays: dict[str, np.ndarray] = {}
    output, error = None, None
    if isinstance(custom, torch.nn.Module):
        arrays = {
            f"param_{i}": p.detach().numpy().copy() for i, p in enumerate(custom.parameters())
        }
        with torch.no_grad():
            output, error = attempt(lambda: custom(data.forward_x.clone()))
        if error is None:
            array = as_array(output)
            if array.dtype != object:
                arrays["output"] = array
    if arrays:
        save_arrays(out, "model", arrays)
    return {
        "module": isinstance(default, torch.nn.Module),
        "default_shapes": _shapes(default),
        "custom_shapes": _shapes(custom),
        "output": describe(output) if error is None else None,
        "forward_error": error,
    }


class TrainingTrace:
    """What ``train_epochs`` does with the network and optimizer it is given.

    Each forward pass: its number of rows, whether the network was in training mode, whether
    gradients were on, and whether its rows are validation rows. Each ``optimizer.step()``.
    """

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, val_x: torch.Tensor
    ) -> None:
        self.forwards: list[dict[str, Any]] = []
        self.steps = 0
        self._val_rows = {self._key(row) for row in val_x}
        self._handles = [
            model.register_forward_pre_hook(self._on_forward),
            optimizer.register_step_pre_hook(self._on_step),
        ]
        self._model = model

    @staticmethod
    def _key(row: torch.Tensor) -> float:
        return round(float(row.detach().double().sum()), 3)

    def _on_forward(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        rows = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() == 2 else 0
        self.forwards.append(
            {
                "rows": rows,
                "training": self._model.training,
                "grad": torch.is_grad_enabled(),
                "val": bool(rows) and self._key(x[0]) in self._val_rows,
            }
        )

    def _on_step(self, *_args: Any) -> None:
        self.steps += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@PROBES("train_epochs")
def _probe_train_epochs(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    inputs = data.inputs
    model, optimizer = data.train_model()
    given = {name: getattr(data, name).clone() for name in TRAIN_TENSORS}
    trace = TrainingTrace(model, optimizer, data.val_x)
    torch.manual_seed(data.train_seed)  # the reference is run after the same seed
    try:
        returned = ns["train_epochs"](
            model, optimizer, *given.values(), inputs.n_epochs, inputs.batch_size
        )
    finally:
        trace.remove()
    save_arrays(
        out, "train_epochs", {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    )
    pair = returned if isinstance(returned, (tuple, list)) and len(returned) == 2 else None
    parts = [describe(part) for part in pair] if pair is not None else None
    return {
        "returned": describe(returned),
        "parts": parts,
        "all_float": pair is not None
        and all(isinstance(part, list) for part in pair)
        and all(isinstance(v, float) for part in pair for v in part),
        "train_losses": floats(pair[0]) if pair is not None else None,
        "val_losses": floats(pair[1]) if pair is not None else None,
        "forwards": trace.forwards,
        "steps": trace.steps,
        "training_after": all(m.training for m in model.modules()),
        "changed_inputs": [n for n in TRAIN_TENSORS if not torch.equal(given[n], getattr(data, n))],
    }


@PROBES("plot_losses")
def _probe_plot_losses(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    import matplotlib.figure
    import matplotlib.pyplot as plt

    figure = ns["plot_losses"](list(data.inputs.curve_train), list(data.inputs.curve_val))
    result: dict[str, Any] = {"returned": describe(figure), "axes": [], "figure_legend": False}
    if isinstance(figure, matplotlib.figure.Figure):
        result["figure_legend"] = bool(figure.legends)
        for ax in figure.axes:
            result["axes"].append(
                {
                    "xlabel": ax.get_xlabel(),
                    "ylabel": ax.get_ylabel(),
                    "legend": ax.get_legend() is not None,
                    "lines": [
                        {
                            "x": floats(line.get_xdata()),
                            "y": floats(line.get_ydata()),
                            "label": str(line.get_label()),
                        }
                        for line in ax.get_lines()
                    ],
                }
            )
        plt.close(figure)
    return result


@PROBES("evaluate")
def _probe_evaluate(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    """On the grader's network in training mode (all rows), then in eval mode (the first rows)."""
    model = data.eval_model()
    side_effects: list[str] = []
    values = []
    returned = None
    for training, rows in ((True, data.inputs.eval_rows), (False, data.inputs.eval_subset)):
        model.train(training)
        x, y = data.eval_x[:rows].clone(), data.eval_y[:rows].clone()
        with watch(side_effects, model):
            value = ns["evaluate"](model, x, y)
        if not (torch.equal(x, data.eval_x[:rows]) and torch.equal(y, data.eval_y[:rows])):
            side_effects.append("inputs")
        returned = describe(value) if returned is None else returned
        values.append(number(value))
    return {"returned": returned, "values": values, "side_effects": side_effects}
