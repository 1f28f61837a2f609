"""The TD "Perceptron multicouche sur CIFAR-10": its student API, done right.

Each function is the oracle a hidden check compares the student's function with, on the
same grader-chosen inputs. The solution cells of ``source/td_mlp/td_mlp.md`` do the same
arithmetic in the same order, so the two agree to float32 rounding, not just on average.
Plain PyTorch/numpy/matplotlib: nothing from ``tdkit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.figure
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

CHANNELS, SIDE = 3, 32
N_FEATURES = CHANNELS * SIDE * SIDE  # one flattened image, (C, H, W) order
N_CLASSES = 10


def normalize(
    images: npt.ArrayLike | torch.Tensor,
    mean: npt.ArrayLike | torch.Tensor,
    std: npt.ArrayLike | torch.Tensor,
) -> torch.Tensor:
    """(N, H, W, C) images -> float32 (N, C*H*W): per-channel z-scores, flattened in (C, H, W) order.

    ``mean`` and ``std`` hold one value per channel (computed on the train split by the
    notebook). ``images`` is never written to: every operation below makes a new tensor.
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    z = (x - torch.as_tensor(mean, dtype=torch.float32)) / torch.as_tensor(std, dtype=torch.float32)
    return z.permute(0, 3, 1, 2).reshape(len(z), -1)


class MLP(torch.nn.Module):
    """Linear/ReLU stack: 3072 inputs, one hidden layer per entry of ``hidden``, ``n_classes`` logits."""

    def __init__(self, hidden: Sequence[int] = (512, 256), n_classes: int = N_CLASSES) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = N_FEATURES
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            width = size
        layers.append(torch.nn.Linear(width, n_classes))
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


def train_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    n_epochs: int,
    batch_size: int,
) -> tuple[list[float], list[float]]:
    """Mini-batch training; returns (train_losses, val_losses), one float of each per epoch.

    Each epoch: one ``torch.randperm`` draw orders the rows (the only random draw, so a seeded
    grader replays it), successive slices of that order are the mini-batches; the train loss
    is the mean of the mini-batches' losses (each counts once), the validation loss the
    cross-entropy of the whole validation set, in eval mode without gradients, after the
    epoch. The model is left in training mode.
    """
    train_losses: list[float] = []
    val_losses: list[float] = []
    for _ in range(n_epochs):
        model.train()
        order = torch.randperm(len(train_x))
        batch_losses = []
        for start in range(0, len(train_x), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
        train_losses.append(sum(batch_losses) / len(batch_losses))
        model.eval()
        with torch.no_grad():
            val_losses.append(F.cross_entropy(model(val_x), val_y).item())
    model.train()
    return train_losses, val_losses


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``x`` whose predicted class is ``y``, in [0, 1].

    Eval mode and no gradients for the forward pass; the model's mode is put back as it was.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            predicted = model(x).argmax(dim=1)
    finally:
        model.train(was_training)
    return int((predicted == torch.as_tensor(y)).sum()) / len(predicted)


def plot_losses(train_losses: Sequence[float], val_losses: Sequence[float]) -> Figure:
    """Two lines, « entraînement » and « validation », x = epoch 1..n, named axes, a legend."""
    fig = matplotlib.figure.Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = np.arange(1, len(train_losses) + 1)
    ax.plot(epochs, train_losses, marker="o", label="entraînement")
    ax.plot(epochs, val_losses, marker="o", label="validation")
    ax.set_xlabel("Époque")
    ax.set_ylabel("Perte (entropie croisée)")
    ax.set_title("Courbes d'apprentissage")
    ax.legend()
    return fig
