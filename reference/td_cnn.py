"""The TD's student API, done right.

Each function is the oracle a hidden check compares the student's function with, on the
same inputs. ``dataset`` is a ``datasets.Dataset`` with columns ``zdata`` (float, (C, H, W))
and ``label`` (int 0-9), as prepared in the TD.
"""

from __future__ import annotations

import datasets
import matplotlib.figure
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

N_CLASSES = 10
EVAL_BATCH = 1024  # images per forward pass in evaluation: memory, not results, depends on it


def to_chw(images_hwc: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W). The TD's ``axes=(2, 1, 0)`` gives (C, W, H) instead."""
    return np.ascontiguousarray(np.transpose(images_hwc, axes=(0, 3, 1, 2)))


class ConvNet(torch.nn.Module):
    """The TD's network, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.activation = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv1 = torch.nn.Conv2d(in_channels=3, out_channels=8, kernel_size=5)
        self.conv2 = torch.nn.Conv2d(in_channels=8, out_channels=16, kernel_size=5)
        self.fc1 = torch.nn.Linear(in_features=16 * 5 * 5, out_features=128)
        self.fc2 = torch.nn.Linear(in_features=128, out_features=128)
        self.fc3 = torch.nn.Linear(in_features=128, out_features=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.activation(self.conv1(x)))
        x = self.pool(self.activation(self.conv2(x)))
        x = x.view((x.shape[0], -1))
        x = self.activation(self.fc1(x))
        x = self.activation(self.fc2(x))
        return self.fc3(x)


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: datasets.Dataset,
    n_epochs: int,
) -> list[float]:
    """The TD's per-sample loop, fixed: zero_grad -> forward -> backward -> step.

    Returns the mean loss of each epoch, in dataset order.
    """
    rows = _zdata_and_labels(dataset).with_format("torch")
    loss_history = []
    for _ in range(n_epochs):
        epoch_loss = 0.0
        for row in rows:
            optimizer.zero_grad()
            output = model(row["zdata"].to(torch.float32).unsqueeze(0))
            loss = F.cross_entropy(output, row["label"].reshape(1))
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        loss_history.append(epoch_loss / len(dataset))
    return loss_history


def plot_learning_curve(loss_history: list[float]) -> Figure:
    """One line: x = epoch 1..n, y = mean loss, labelled axes."""
    fig = matplotlib.figure.Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = np.arange(1, len(loss_history) + 1)
    ax.plot(epochs, loss_history, marker="o")
    ax.set_xlabel("Époque")
    ax.set_ylabel("Perte moyenne (entropie croisée)")
    ax.set_title("Courbe d'apprentissage")
    return fig


def _zdata_and_labels(dataset: datasets.Dataset) -> datasets.Dataset:
    # The TD's dataset also holds the images (``img``): formatting them is slow and unused.
    return dataset.select_columns(["zdata", "label"])


def _inputs_and_labels(dataset: datasets.Dataset) -> tuple[torch.Tensor, np.ndarray]:
    batch = _zdata_and_labels(dataset).with_format("numpy")[:]
    inputs = torch.as_tensor(np.asarray(batch["zdata"], dtype=np.float32))
    return inputs, np.asarray(batch["label"], dtype=np.int64)


def _predict_tensor(model: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [model(inputs[i : i + EVAL_BATCH]).argmax(dim=1) for i in range(0, len(inputs), EVAL_BATCH)]
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(chunks).numpy().astype(np.int64)


def predict(model: torch.nn.Module, dataset: datasets.Dataset) -> np.ndarray:
    """Predicted class index of every row, in dataset order."""
    inputs, _ = _inputs_and_labels(dataset)
    return _predict_tensor(model, inputs)


def accuracy(model: torch.nn.Module, dataset: datasets.Dataset) -> float:
    """Fraction of rows predicted right, in [0, 1]."""
    inputs, labels = _inputs_and_labels(dataset)
    return float(np.mean(_predict_tensor(model, inputs) == labels))


def confusion_matrix(model: torch.nn.Module, dataset: datasets.Dataset) -> np.ndarray:
    """Counts, shape (10, 10): rows = true class, columns = predicted class."""
    inputs, labels = _inputs_and_labels(dataset)
    predicted = _predict_tensor(model, inputs)
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return confusion


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class: diagonal over row sums. NaN for a class absent from the data."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1)
    result = np.full(confusion.shape[0], np.nan)
    np.divide(np.diag(confusion), totals, out=result, where=totals > 0)
    return result


def activation_maps(model: ConvNet, images: torch.Tensor) -> torch.Tensor:
    """Where the first convolution fires: one map per image, in [0, 1].

    A forward hook captures ``conv1``'s output; the positive part is summed over channels
    and divided by its maximum (the Keras ``get_mask`` of the original TD).
    """
    captured: list[torch.Tensor] = []
    handle = model.conv1.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images.to(torch.float32))
    finally:
        handle.remove()
        model.train(was_training)
    maps = captured[0].clamp(min=0).sum(dim=1)
    peak = maps.flatten(1).amax(dim=1).clamp(min=1e-12)
    return maps / peak[:, None, None]
