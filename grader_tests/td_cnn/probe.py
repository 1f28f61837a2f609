"""td_cnn's probe: call the student API on grader-chosen inputs and write plain artifacts.

Runs inside the student's kernel (in the sandbox when grading), with ``inputs.py`` and ``cifar.py``
beside it (``assignment.py`` lists them) and tdkit's probe kit. It imports neither ``reference``
nor the checks: it only records what the student's functions do, as JSON
and ``.npz`` (never pickles). Every function is tried even when another one fails.

Each function is judged on its own: while one is probed, the other evaluation functions it
may call (``predict``, ``accuracy``, ``confusion_matrix``) are grader stand-ins built on
``inputs.grader_predictions``, grader-chosen predictions that the trusted side
recomputes from the same rows (no solution code needs to reach the sandbox). ``accuracy`` and
``confusion_matrix`` are run both ways, as written (with the student's own functions) and
alone (with the stand-ins); the trusted side judges the run as written unless a function it
called fails its own checks. What a function leaves changed in its arguments (weights, mode, hooks of the model,
the dataset's format) is recorded as ``side_effects``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdkit.untrusted.probe import (
    Probes,
    array_result,
    as_array,
    attempt,
    describe,
    floats,
    fresh,
    number,
    save_arrays,
    stand_ins,
    watch,
)

from .inputs import (
    N_CLASSES,
    GradingData,
    GradingInputs,
    eval_model,
    graded_training,
    grader_predictions,
)

PROBES = Probes(lambda: GradingData(GradingInputs()))


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


@PROBES("train")
def _probe_train(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    inputs = data.inputs
    model, optimizer = graded_training(ns["ConvNet"], inputs)
    trace = TrainingTrace(model, optimizer)
    side_effects: list[str] = []
    dataset = fresh(data.train)
    try:
        with stand_ins(ns, "train", STAND_INS), watch(side_effects, dataset=dataset):
            returned = ns["train"](model, optimizer, dataset, inputs.train_epochs)
    finally:
        trace.remove()
    weights = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    save_arrays(out, "train", weights)
    return {
        "returned": describe(returned),
        "loss_history": floats(returned) if returned is not None else None,
        "events": "".join(trace.events),
        "input_sums": trace.input_sums,
        "batch_sizes": trace.batch_sizes,
        "side_effects": side_effects,
    }


@PROBES("learning_curve")
def _probe_learning_curve(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    import matplotlib.figure
    import matplotlib.pyplot as plt

    with stand_ins(ns, "plot_learning_curve", STAND_INS):
        figure = ns["plot_learning_curve"](list(data.inputs.curve))
    result: dict[str, Any] = {"returned": describe(figure), "axes": []}
    if isinstance(figure, matplotlib.figure.Figure):
        for ax in figure.axes:
            result["axes"].append(
                {
                    "xlabel": ax.get_xlabel(),
                    "ylabel": ax.get_ylabel(),
                    "title": ax.get_title(),
                    "lines": [
                        {"x": floats(line.get_xdata()), "y": floats(line.get_ydata())}
                        for line in ax.get_lines()
                    ],
                }
            )
        plt.close(figure)
    return result


@PROBES("predict")
def _probe_predict(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    model = eval_model(ns["ConvNet"], data.inputs)
    side_effects: list[str] = []
    dataset = fresh(data.eval)
    with stand_ins(ns, "predict", STAND_INS), watch(side_effects, model, dataset):
        value = ns["predict"](model, dataset)
    subsets = {}
    with stand_ins(ns, "predict", STAND_INS):
        for n, subset in zip(data.inputs.accuracy_subsets, data.eval_subsets):
            subsets[f"subset_{n}"] = as_array(ns["predict"](model, fresh(subset)))
    plain = {k: v for k, v in subsets.items() if v.dtype != object}
    return {**array_result(value, "predict", out, plain), "side_effects": side_effects}


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
            dataset = fresh(data.eval)
            replaced = (
                stand_ins(ns, function, STAND_INS, calls)
                if run == "alone"
                else contextlib.nullcontext()
            )
            with replaced:
                with watch(side_effects, model, dataset):
                    first = ns[function](model, dataset)
                rest = [ns[function](model, fresh(subset)) for subset in data.eval_subsets]
            return [first, *rest]

        if run == "alone" and records["written"]["error"] is not None:
            got, error = call(), None
        else:
            got, error = attempt(call)
        values[run] = got
        records[run] = {
            "returned": describe(got[0]) if got is not None else None,
            "error": error,
            "side_effects": side_effects if error is None else [],
        }
    records["alone"]["stand_ins_called"] = sorted(set(calls))
    return records, values


@PROBES("accuracy")
def _probe_accuracy(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    runs, values = _run_twice(ns, data, "accuracy")
    for run, got in values.items():
        runs[run]["values"] = [number(v) for v in got] if got is not None else None
    return {"runs": runs}


@PROBES("confusion_matrix")
def _probe_confusion_matrix(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    runs, values = _run_twice(ns, data, "confusion_matrix")
    arrays = {}
    for run, got in values.items():
        try:
            array = as_array(got[0]) if got is not None else None
        except Exception:  # noqa: BLE001 - a value NumPy cannot read is judged by its description
            array = None
        if array is not None and array.dtype != object:
            arrays[run] = array
    if arrays:
        save_arrays(out, "confusion_matrix", arrays)
    return {"runs": runs}


@PROBES("per_class_accuracy")
def _probe_per_class_accuracy(
    ns: Mapping[str, Any], data: GradingData, out: Path
) -> dict[str, Any]:
    given = data.confusion.copy()
    with stand_ins(ns, "per_class_accuracy", STAND_INS):
        value = ns["per_class_accuracy"](given)
    side_effects = [] if np.array_equal(given, data.confusion) else ["confusion"]
    return {**array_result(value, "per_class_accuracy", out), "side_effects": side_effects}


@PROBES("activation_maps")
def _probe_activation_maps(ns: Mapping[str, Any], data: GradingData, out: Path) -> dict[str, Any]:
    model = eval_model(ns["ConvNet"], data.inputs)
    images = data.images.clone()
    side_effects: list[str] = []
    with stand_ins(ns, "activation_maps", STAND_INS), watch(side_effects, model):
        value = ns["activation_maps"](model, images)
    if not torch.equal(images, data.images):
        side_effects.append("images")
    return {**array_result(value, "activation_maps", out), "side_effects": side_effects}
