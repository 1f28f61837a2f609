"""The reference side of td_mlp's hidden checks: ``reference.td_mlp`` on the grader's inputs.

Never released. Imports ``reference``, tdkit's artifact reader and this assignment's inputs;
never runs student code. Each value is computed once per grading process (the inputs are
tiny: the reference's training takes milliseconds, no disk cache needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from reference import td_mlp as reference
from tdkit.trusted.checks import fail

from .inputs import GradingData, GradingInputs

INPUTS = GradingInputs()


@cache
def grading_data() -> GradingData:
    return GradingData(INPUTS)


# --------------------------------------------------------------------------------------------
# normalize


@cache
def reference_normalized() -> np.ndarray:
    data = grading_data()
    return reference.normalize(data.images, data.mean, data.std).numpy()


@cache
def hwc_normalized() -> np.ndarray:
    """The right z-scores flattened in (H, W, C) order: what a ``reshape`` without ``permute`` gives."""
    data = grading_data()
    z = (data.images.astype(np.float64) - data.mean) / data.std
    return z.reshape(len(z), -1)


# --------------------------------------------------------------------------------------------
# MLP


def reference_shapes(**kwargs: object) -> list[list[int]]:
    return [list(p.shape) for p in reference.MLP(**kwargs).parameters()]  # type: ignore[arg-type]


def reference_forward(parameters: list[np.ndarray]) -> np.ndarray:
    """The reference network's logits on the grader's rows, with the student's parameters."""
    model = reference.MLP(hidden=INPUTS.hidden, n_classes=INPUTS.n_classes)
    with torch.no_grad():
        for mine, theirs in zip(model.parameters(), parameters):
            mine.copy_(torch.as_tensor(theirs))
        return model(grading_data().forward_x).numpy()


# --------------------------------------------------------------------------------------------
# train_epochs


@dataclass(frozen=True)
class ReferenceTraining:
    weights: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    train_losses: list[float]
    val_losses: list[float]
    # Each epoch's mean over rows rather than over mini-batches (the last batch is smaller):
    # not what the statement asks, but a mean loss all the same, accepted.
    row_mean_losses: list[float]
    batch_rows: list[int]  # rows of each training forward pass, in order


@cache
def reference_training() -> ReferenceTraining:
    data = grading_data()
    model, optimizer = data.train_model()
    initial = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(
        _module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        if model.training:
            recorded.append((args[0].detach(), output.detach()))

    handle = model.register_forward_hook(keep)
    torch.manual_seed(data.train_seed)
    try:
        train_losses, val_losses = reference.train_epochs(
            model,
            optimizer,
            data.train_x,
            data.train_y,
            data.val_x,
            data.val_y,
            INPUTS.n_epochs,
            INPUTS.batch_size,
        )
    finally:
        handle.remove()
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return ReferenceTraining(
        weights,
        initial,
        train_losses,
        val_losses,
        _row_means(recorded, data),
        [len(x) for x, _ in recorded],
    )


def _row_means(recorded: list[tuple[torch.Tensor, torch.Tensor]], data: GradingData) -> list[float]:
    """Each epoch's loss summed over its rows, divided by the number of rows."""
    label_of = {row.numpy().tobytes(): int(y) for row, y in zip(data.train_x, data.train_y)}
    per_epoch = len(recorded) // INPUTS.n_epochs
    means = []
    for epoch in range(INPUTS.n_epochs):
        total = 0.0
        for x, logits in recorded[epoch * per_epoch : (epoch + 1) * per_epoch]:
            labels = torch.tensor([label_of[row.numpy().tobytes()] for row in x])
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
        means.append(total / INPUTS.train_rows)
    return means


def batches_per_epoch() -> int:
    return -(-INPUTS.train_rows // INPUTS.batch_size)


# --------------------------------------------------------------------------------------------
# evaluate, plot_losses


@cache
def reference_accuracies() -> tuple[float, float]:
    data = grading_data()
    model = data.eval_model()
    full = reference.evaluate(model, data.eval_x, data.eval_y)
    first = reference.evaluate(
        model, data.eval_x[: INPUTS.eval_subset], data.eval_y[: INPUTS.eval_subset]
    )
    return full, first


def reference_views() -> dict[str, list[float]]:
    """What the feedback page draws beside the student's curves: the very values the checks use."""
    training = reference_training()
    return {"train_losses": training.train_losses, "val_losses": training.val_losses}


# --------------------------------------------------------------------------------------------
# Messages


def described(returned: dict | None) -> str:
    """A returned value's type (with shape and dtype for arrays), as the student reads it."""
    returned = returned or {}
    text = str(returned.get("type", "?")).removeprefix("builtins.")
    if "shape" in returned:
        text += f" de forme {tuple(returned['shape'])} et de dtype {returned['dtype']}"
    return text


def require_call(call: dict, function: str) -> None:
    """Fail with the error one of the probe's calls raised, if it did."""
    if call["error"] is not None:
        fail(f"`{function}` a levé une erreur sur les données du correcteur : {call['error']}")
