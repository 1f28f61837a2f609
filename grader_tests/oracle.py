"""The reference side of the hidden checks: the oracle run on the grader-chosen inputs.

Never released. Imports ``reference`` and tdkit's artifact reader and input builder; never
runs student code. Results are cached: every submission is compared with the same run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reference
from tdkit.artifacts import Artifact
from tdkit.checks import fail
from tdkit.inputs import GradingData, GradingInputs, eval_model, train_model

INPUTS = GradingInputs()


@cache
def grading_data() -> GradingData:
    return GradingData(INPUTS)


@dataclass(frozen=True)
class ReferenceTraining:
    weights: dict[str, np.ndarray]
    loss_history: list[float]
    input_sums: list[float]
    # The mean loss of each epoch when the weights never move (no step, or steps on a zero
    # gradient): what the TD's loop returns, divided by the number of rows.
    frozen_loss_history: list[float]


@cache
def reference_training() -> ReferenceTraining:
    data = grading_data()
    model = train_model(reference.ConvNet, INPUTS)
    optimizer = torch.optim.SGD(model.parameters(), lr=INPUTS.train_lr)
    history = reference.train(model, optimizer, data.train, INPUTS.train_epochs)
    rows = data.train.with_format("numpy")[:]["zdata"].astype(np.float32)
    sums = [float(row.astype(np.float64).sum()) for row in rows] * INPUTS.train_epochs
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return ReferenceTraining(weights, history, sums, _frozen_loss_history(data))


def _frozen_loss_history(data: GradingData) -> list[float]:
    model = train_model(reference.ConvNet, INPUTS)
    rows = torch.as_tensor(data.train.with_format("numpy")[:]["zdata"], dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(data.train["label"]), dtype=torch.int64)
    with torch.no_grad():
        losses = [
            float(torch.nn.functional.cross_entropy(model(x[None]), y[None]))
            for x, y in zip(rows, labels)
        ]
    return [float(np.mean(losses))] * INPUTS.train_epochs


@cache
def initial_weights() -> dict[str, np.ndarray]:
    """The weights of the model handed to the student's ``train``, before training."""
    return {
        k: v.detach().numpy().copy()
        for k, v in train_model(reference.ConvNet, INPUTS).state_dict().items()
    }


@cache
def reference_eval_model() -> torch.nn.Module:
    return eval_model(reference.ConvNet, INPUTS)


def unusable_message(artifact: Artifact) -> str:
    function = artifact.record.get("function") or artifact.group
    if artifact.status == "missing":
        return (
            f"La fonction `{function}` n'est pas définie après l'exécution du notebook : sa cellule s'est "
            "sans doute arrêtée sur une erreur avant la ligne `def` (voir les erreurs de cellules du "
            "rapport), ou la fonction a été supprimée ou renommée. Corrigez l'erreur et gardez le nom et "
            "la signature de la fonction : le correcteur l'appelle."
        )
    if artifact.status == "error":
        last = artifact.error.strip().splitlines()[-1:] or [""]
        if last[0].startswith("NotImplementedError"):
            return (
                f"`{function}` n'est pas encore écrite : elle lève toujours `NotImplementedError`. "
                "Remplacez `raise NotImplementedError()` par votre code."
            )
        return (
            f"`{function}` a levé une erreur sur les données du correcteur : {last[0]}\n"
            "Le détail est dans le rapport ; testez votre fonction sur un petit dataset."
        )
    return (
        f"Le notebook n'a pas pu être exécuté jusqu'à l'appel de `{function}` "
        "(erreur, temps dépassé ou noyau arrêté) : aucun résultat à vérifier."
    )


def returned_array(artifact: Artifact, what: str) -> np.ndarray:
    """The function's returned value as an array, or a failed check saying what came back."""
    if "value" not in artifact.arrays:
        fail(
            f"{what} doit renvoyer un tableau Numpy ou un tenseur ; reçu : {artifact['returned']['type']}."
        )
    return artifact.arrays["value"]
