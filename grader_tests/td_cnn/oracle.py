"""The reference side of the hidden checks: the oracle run on the grader-chosen inputs.

Never released. Imports ``reference``, tdkit's artifact reader and this assignment's input builder; never
runs student code. Results are cached: every submission is compared with the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

import reference
from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail
from tdkit.trusted.oracle_cache import remembered

from .inputs import (
    N_CLASSES,
    GradingData,
    GradingInputs,
    eval_model,
    graded_training,
    grader_predictions,
    train_model,
)

COURSE = Path(__file__).resolve().parents[2]

INPUTS = GradingInputs()
# What the reference's training depends on, besides tdkit and the libraries: its cached value
# is trained again when one changes.
SOURCES = (COURSE / "reference", Path(__file__).parent)
WEIGHT = "weight:"  # the key prefix of the trained weights beside the loss history


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
    trained = remembered("reference_training", SOURCES, _train_reference)
    weights = {k.removeprefix(WEIGHT): v for k, v in trained.items() if k.startswith(WEIGHT)}
    history = [float(v) for v in trained["loss_history"]]
    rows = data.train.with_format("numpy")[:]["zdata"].astype(np.float32)
    sums = [float(row.astype(np.float64).sum()) for row in rows] * INPUTS.train_epochs
    return ReferenceTraining(weights, history, sums, _frozen_loss_history(data))


def _train_reference() -> dict[str, np.ndarray]:
    model, optimizer = graded_training(reference.ConvNet, INPUTS)
    history = reference.train(model, optimizer, grading_data().train, INPUTS.train_epochs)
    return {
        "loss_history": np.asarray(history, dtype=np.float64),
        **{WEIGHT + k: v.detach().numpy().copy() for k, v in model.state_dict().items()},
    }


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


@cache
def reference_confusion() -> np.ndarray:
    return reference.confusion_matrix(reference_eval_model(), grading_data().eval)


# What the reference gives on the grader's evaluation rows and images: the same for every
# submission, computed once per grading process.
@cache
def reference_predictions() -> tuple[np.ndarray, ...]:
    return tuple(reference.predict(reference_eval_model(), d) for d in eval_datasets())


@cache
def reference_accuracies() -> tuple[float, ...]:
    return tuple(reference.accuracy(reference_eval_model(), d) for d in eval_datasets())


@cache
def reference_maps() -> np.ndarray:
    return reference.activation_maps(reference_eval_model(), grading_data().images).numpy()


def reference_views() -> dict[str, list]:
    """What the reports draw beside the student's: the very curve and matrix the checks compare with."""
    return {
        "loss_history": [float(v) for v in reference_training().loss_history],
        "confusion": reference_confusion().tolist(),
    }


def returned_array(artifact: Artifact, what: str) -> np.ndarray:
    """The function's returned value as an array, or a failed check saying what came back."""
    if "value" not in artifact.arrays:
        fail(
            f"{what} doit renvoyer un tableau Numpy ou un tenseur ; reçu : {artifact['returned']['type']}."
        )
    return artifact.arrays["value"]


def described(artifact: Artifact) -> str:
    """The returned value's type (with shape and dtype for arrays), as the student reads it."""
    returned = artifact["returned"] or {}
    text = str(returned.get("type", "?")).removeprefix("builtins.")
    if "shape" in returned:
        text += f" de forme {tuple(returned['shape'])} et de dtype {returned['dtype']}"
    return text


# What a function must leave as it found it, and what to say when it does not.
SIDE_EFFECTS = {
    "weights": "`{f}` a modifié les poids du modèle passé en argument : elle doit seulement s'en servir "
    "(pas d'entraînement ni de `optimizer.step()` ici).",
    "mode": "`{f}` rend le modèle dans un autre mode que celui où elle l'a reçu (par exemple `model.eval()` "
    "sans `model.train()` à la fin) : notez `was_training = model.training` au début et finissez par "
    "`model.train(was_training)`.",
    "requires_grad": "`{f}` a changé `requires_grad` des paramètres du modèle : pour ne pas calculer de "
    "gradients, utilisez `with torch.no_grad():`, qui ne touche pas au modèle.",
    "hooks": "`{f}` laisse un hook enregistré sur le modèle : retirez-le à la fin (`handle.remove()`, de "
    "préférence dans un `finally`), sinon chaque appel suivant du modèle l'exécute encore.",
    "dataset": "`{f}` a modifié le dataset passé en argument (son format, avec `set_format` par exemple) : "
    "utilisez `dataset.with_format(...)`, qui renvoie une copie, et laissez celui de l'appelant tel quel.",
    "images": "`{f}` a modifié le tenseur `images` passé en argument (opération en place) : travaillez sur "
    "une copie, ou avec des opérations qui créent un nouveau tenseur.",
    "confusion": "`{f}` a modifié la matrice passée en argument (opération en place) : `confusion / ...` crée "
    "un nouveau tableau, `confusion /= ...` écrase celui de l'appelant.",
}


def require_untouched(artifact: Artifact, function: str, effects: tuple[str, ...]) -> None:
    """Fail with the message of the first of ``effects`` the function left behind."""
    found = artifact["side_effects"] or []
    for effect in effects:
        if effect in found:
            fail(SIDE_EFFECTS[effect].format(f=function))


def eval_datasets() -> list:
    """The rows the evaluation functions are called on: all of them, then the first rows."""
    data = grading_data()
    return [data.eval, *data.eval_subsets]


def _labels(dataset) -> np.ndarray:
    return np.asarray(dataset["label"], dtype=np.int64)


@cache
def grader_accuracies() -> list[float]:
    """What a correct ``accuracy`` returns with the grader's stand-in ``predict``."""
    return [float(np.mean(grader_predictions(d) == _labels(d))) for d in eval_datasets()]


@cache
def grader_confusion() -> np.ndarray:
    """What a correct ``confusion_matrix`` returns with the grader's stand-in ``predict``."""
    data = grading_data()
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (_labels(data.eval), grader_predictions(data.eval)), 1)
    return confusion
