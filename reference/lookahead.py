"""Lookahead averaging of a model's weights, as in Keller Jordan's airbench (and hlb-CIFAR10).

Every few steps the weights move to a running average of themselves that trusts the average
more and more as training ends (decay ``0.95**5 * progress**3``), then training resumes from
there; the last call puts the average in place. Both reference trainings use it.
"""

from __future__ import annotations

import torch


class Lookahead:
    def __init__(self, model: torch.nn.Module, every: int, total_steps: int) -> None:
        self.model, self.every, self.total_steps = model, every, total_steps
        self.decays = 0.95**5 * (torch.arange(total_steps + 1) / total_steps) ** 3
        # Floating-point entries only: a BatchNorm's step counter is not averaged.
        self.average = {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if value.dtype.is_floating_point
        }

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Average every ``every`` steps (never when ``every`` is 0); the last step ends on it."""
        if not self.every:
            return
        if step % self.every == 0:
            self._move(float(self.decays[step]))
        if step == self.total_steps:
            self._move(1.0)

    def _move(self, decay: float) -> None:
        current = self.model.state_dict()
        for name, average in self.average.items():
            average.lerp_(current[name], 1 - decay)
            current[name].copy_(average)
