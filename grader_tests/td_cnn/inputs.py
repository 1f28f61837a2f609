"""Grader-chosen inputs: the same on both sides of the sandbox.

The probe (inside the sandbox) and the hidden checks (outside) each rebuild these from the
seed; nothing the student kernel writes decides what the reference is computed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import datasets
import numpy as np
import torch

from .cifar import prepare_arrays, synthetic_arrays, to_zdata_dataset

N_CLASSES = 10


@dataclass(frozen=True)
class GradingInputs:
    seed: int = 2024
    train_samples: int = 12  # rows given to the student's train()
    train_epochs: int = 2
    train_lr: float = 0.01  # plain SGD: any change in the loop shows in the weights
    eval_samples: int = 120  # rows for predict/accuracy/confusion_matrix
    absent_class: int = 9  # left out of the evaluation rows: a confusion matrix must still be 10x10
    accuracy_subsets: tuple[int, ...] = (
        37,
        81,
    )  # accuracy is also asked on the first rows: a value
    # that ignores its dataset argument cannot match on every one
    n_maps: int = 4  # images given to activation_maps
    curve: tuple[float, ...] = (
        2.31,
        1.87,
        1.52,
        1.61,
        1.24,
    )  # not monotone, so a re-sorted plot shows


@dataclass(frozen=True)
class GradingData:
    """The datasets and fixed values derived from ``GradingInputs``."""

    inputs: GradingInputs

    @cached_property
    def _prepared(self) -> tuple[np.ndarray, np.ndarray]:
        # The synthetic images as arrays: what load_cifar10("synthetic") gives, decoded (run per probe).
        splits = synthetic_arrays(
            n_train=self.inputs.train_samples * 4,
            n_test=self.inputs.eval_samples * 2,
            seed=self.inputs.seed,
        )
        prepared = prepare_arrays(splits["train"], splits["test"])
        return (
            np.concatenate([prepared.x_train, prepared.x_test]),
            np.concatenate([prepared.y_train, prepared.y_test]),
        )

    @cached_property
    def train(self) -> datasets.Dataset:
        x, y = self._prepared
        n = self.inputs.train_samples
        return to_zdata_dataset(x[:n], y[:n])

    @cached_property
    def eval(self) -> datasets.Dataset:
        x, y = self._prepared
        keep = np.flatnonzero(y != self.inputs.absent_class)[-self.inputs.eval_samples :]
        return to_zdata_dataset(x[keep], y[keep])

    @cached_property
    def eval_subsets(self) -> list[datasets.Dataset]:
        return [self.eval.select(range(n)) for n in self.inputs.accuracy_subsets]

    @cached_property
    def images(self) -> torch.Tensor:
        x, _ = self._prepared
        return torch.as_tensor(x[: self.inputs.n_maps].copy())

    @cached_property
    def confusion(self) -> np.ndarray:
        """An asymmetric count matrix with one empty row: recall and precision differ."""
        rng = np.random.default_rng(self.inputs.seed)
        confusion = rng.integers(0, 6, size=(N_CLASSES, N_CLASSES)) + np.diag(
            rng.integers(3, 20, N_CLASSES)
        )
        confusion[self.inputs.absent_class] = 0
        return confusion.astype(np.int64)


def grader_predictions(dataset: datasets.Dataset) -> np.ndarray:
    """Grader-chosen class of every row: what the stand-in ``predict`` returns.

    Functions that build on ``predict`` are judged with it in place of the student's own when
    that one fails its checks, so that a wrong ``predict`` is charged once. About a third of the
    rows are wrong, off the diagonal and asymmetric, so a transposed confusion matrix shows.

    The stand-in keeps every condition the grader's rows were chosen for, so that a function
    depending on one fails with it as it does with a correct ``predict`` (``tests/test_stand_ins.py``
    has one test per condition):

    - a class absent from the labels is never predicted: a matrix sized from the classes seen
      (``np.unique``, the largest label, ``np.bincount`` without ``minlength``) comes out short;
    - one prediction per row given, whatever their number (37, 81, 120: not multiples of a batch);
    - in the dataset's order: a function that sorts or shuffles one side only is wrong;
    - int64, the dtype of ``argmax``.

    A row's prediction depends on its label, its first pixel and the classes present, so a
    subset gets the same predictions unless it lacks a class.
    """
    rows = dataset.select_columns(["zdata", "label"]).with_format("numpy")[:]
    labels = np.asarray(rows["label"], dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        return labels
    first_pixels = np.asarray(rows["zdata"], dtype=np.float32)[:, 0, 0, 0]
    key = (np.abs(first_pixels) * 1e4).astype(np.int64)
    rank = np.searchsorted(present, labels)
    wrong = present[(rank + 1 + key % (len(present) - 1)) % len(present)]
    return np.where(key % 3 == 0, wrong, labels).astype(np.int64)


def train_model(convnet_cls: type[torch.nn.Module], inputs: GradingInputs) -> torch.nn.Module:
    """The untrained model handed to ``train``."""
    torch.manual_seed(inputs.seed)
    return convnet_cls()


def graded_training(
    convnet_cls: type[torch.nn.Module], inputs: GradingInputs
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model and the optimizer handed to ``train``: the probe's and the oracle's are the same."""
    model = train_model(convnet_cls, inputs)
    return model, torch.optim.SGD(model.parameters(), lr=inputs.train_lr)


def eval_model(convnet_cls: type[torch.nn.Module], inputs: GradingInputs) -> torch.nn.Module:
    """A fixed model whose predictions spread over many classes.

    A freshly initialised network predicts nearly one class; a larger last layer makes the
    confusion matrix asymmetric, so a transposed one shows.
    """
    torch.manual_seed(inputs.seed + 1)
    model = convnet_cls()
    with torch.no_grad():
        fc3: Any = model.fc3  # the student's network: its layers are whatever the student built
        fc3.weight.mul_(25.0)
        fc3.bias.mul_(25.0)
    return model
