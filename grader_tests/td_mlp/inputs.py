"""Grader-chosen inputs of td_mlp: the same on both sides of the sandbox.

The probe (inside the sandbox) and the hidden checks (outside) each rebuild them from the seed:
small synthetic tensors, no dataset. Nothing the student kernel writes decides what the
reference is computed on. Plain NumPy and PyTorch: no solution code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

N_FEATURES = 3 * 32 * 32
N_CLASSES = 10


@dataclass(frozen=True)
class GradingInputs:
    seed: int = 2025
    n_images: int = 5  # images given to normalize
    # Per-channel statistics far apart: a mean or std of the wrong channel, or of all of them, shows.
    mean: tuple[float, float, float] = (131.5, 96.25, 57.75)
    std: tuple[float, float, float] = (61.0, 48.5, 33.25)
    hidden: tuple[int, ...] = (24, 12)  # MLP(hidden=..., n_classes=...) for the shapes and forward
    n_classes: int = 7
    forward_rows: int = 6
    train_rows: int = 50  # rows given to train_epochs: 16 + 16 + 16 + 2, a last batch smaller
    val_rows: int = 23
    batch_size: int = 16
    n_epochs: int = 3
    lr: float = 0.05  # plain SGD: a missing, doubled or misplaced step shows in the weights
    grader_hidden: int = 16  # width of the grader's own network given to train_epochs and evaluate
    eval_rows: int = 60
    eval_subset: int = 17  # evaluate is also asked on the first rows: a value ignoring x fails
    curve_train: tuple[float, ...] = (2.21, 1.84, 1.63, 1.52, 1.47)
    curve_val: tuple[float, ...] = (2.05, 1.79, 1.71, 1.76, 1.88)  # not monotone: a re-sort shows


def grader_network(hidden: int, seed: int) -> torch.nn.Sequential:
    """The grader's own MLP: ``train_epochs`` and ``evaluate`` are judged without the student's
    ``MLP``, so a wrong class is charged once, in its own group."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, N_CLASSES)
    )


@dataclass(frozen=True)
class GradingData:
    """The tensors and arrays derived from ``GradingInputs``."""

    inputs: GradingInputs

    @cached_property
    def images(self) -> np.ndarray:
        """uint8 (N, 32, 32, 3), each channel around its own mean."""
        rng = np.random.default_rng(self.inputs.seed)
        base = np.asarray(self.inputs.mean) + rng.normal(
            0.0, 40.0, (self.inputs.n_images, 32, 32, 3)
        )
        return np.clip(np.rint(base), 0, 255).astype(np.uint8)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.inputs.mean, dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.inputs.std, dtype=np.float64)

    @cached_property
    def forward_x(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.inputs.seed + 1)
        return torch.randn(self.inputs.forward_rows, N_FEATURES, generator=generator)

    @cached_property
    def _train_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.inputs.train_rows + self.inputs.val_rows
        generator = torch.Generator().manual_seed(self.inputs.seed + 2)
        x = torch.randn(n, N_FEATURES, generator=generator)
        y = torch.randint(0, N_CLASSES, (n,), generator=generator)
        return x, y

    @property
    def train_x(self) -> torch.Tensor:
        return self._train_val[0][: self.inputs.train_rows]

    @property
    def train_y(self) -> torch.Tensor:
        return self._train_val[1][: self.inputs.train_rows]

    @property
    def val_x(self) -> torch.Tensor:
        return self._train_val[0][self.inputs.train_rows :]

    @property
    def val_y(self) -> torch.Tensor:
        return self._train_val[1][self.inputs.train_rows :]

    def train_model(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The network and optimizer handed to ``train_epochs``: the probe's and the oracle's are
        the same; ``torch.manual_seed(train_seed)`` comes right before the call."""
        model = grader_network(self.inputs.grader_hidden, self.inputs.seed + 3)
        return model, torch.optim.SGD(model.parameters(), lr=self.inputs.lr)

    @property
    def train_seed(self) -> int:
        return self.inputs.seed + 4

    def eval_model(self) -> torch.nn.Module:
        """A fixed network whose predictions spread over the classes (a larger last layer)."""
        model = grader_network(self.inputs.grader_hidden, self.inputs.seed + 5)
        with torch.no_grad():
            model[2].weight.mul_(25.0)
            model[2].bias.mul_(25.0)
        return model

    @cached_property
    def _eval(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.inputs.seed + 6)
        x = torch.randn(self.inputs.eval_rows, N_FEATURES, generator=generator)
        with torch.no_grad():
            guess = self.eval_model()(x).argmax(dim=1)
        # About two rows in three labelled as the network predicts: an accuracy far from 0, 1/2 and 1.
        other = torch.randint(0, N_CLASSES, (len(x),), generator=generator)
        keep = torch.rand(len(x), generator=generator) < 2 / 3
        return x, torch.where(keep, guess, other)

    @property
    def eval_x(self) -> torch.Tensor:
        return self._eval[0]

    @property
    def eval_y(self) -> torch.Tensor:
        return self._eval[1]
