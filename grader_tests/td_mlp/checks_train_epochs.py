"""Hidden checks of ``train_epochs``.

The probe gave it the grader's own network (3072 -> 16 -> 10), plain SGD, 50 training rows
(mini-batches of 16: the last one has 2 rows), 23 validation rows and 3 epochs, after
``torch.manual_seed``; the oracle runs ``reference.td_mlp.train_epochs`` on the same network,
seed and rows, so a correct loop gives the same weights and losses to float rounding.
"""

from __future__ import annotations

import math

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS, batches_per_epoch, described, reference_training

RTOL, ATOL = 1e-4, 1e-6  # a few float32 roundings amplified by three epochs of SGD


def _close(values: list[float] | None, expected: list[float]) -> bool:
    return (
        values is not None
        and len(values) == len(expected)
        and np.allclose(values, expected, rtol=RTOL)
    )


def _weights_match(artifact: Artifact, expected: dict[str, np.ndarray]) -> bool:
    return set(artifact.arrays) == set(expected) and all(
        np.allclose(artifact.arrays[k], v, rtol=RTOL, atol=ATOL) for k, v in expected.items()
    )


@hidden_check("train_epochs/returns_losses", points=1)
def test_returns_losses(artifact: Artifact) -> None:
    require(
        artifact["returned"]["type"] == "builtins.tuple" and artifact["parts"] is not None,
        "`train_epochs` doit renvoyer un couple `(train_losses, val_losses)` : "
        f"`return train_losses, val_losses` ; reçu : {described(artifact['returned'])}.",
    )
    require(
        all(part["list"] for part in artifact["parts"]),
        "Les deux pertes renvoyées doivent être des listes Python (une valeur par époque) ; reçu : "
        f"{', '.join(described(part) for part in artifact['parts'])}.",
    )
    require(
        artifact["all_float"],
        "Chaque perte doit être un `float` Python : ajoutez `loss.item()` (un tenseur garde tout "
        "le graphe de calcul en mémoire).",
    )
    for name in ("train_losses", "val_losses"):
        values = artifact[name]
        require(
            len(values) == INPUTS.n_epochs and all(math.isfinite(v) for v in values),
            f"`{name}` doit avoir une valeur finie par époque ({INPUTS.n_epochs} ici) ; reçu : {values}.",
        )


@hidden_check("train_epochs/matches_reference", points=2)
def test_matches_reference(artifact: Artifact) -> None:
    training = reference_training()
    if _weights_match(artifact, training.weights):
        return
    expected_steps = INPUTS.n_epochs * batches_per_epoch()
    if artifact["steps"] == 0 or _weights_match(artifact, training.initial):
        fail(
            "Les poids n'ont pas bougé : appelez `optimizer.step()` après `loss.backward()`, pour "
            "chaque mini-batch."
        )
    if artifact["steps"] != expected_steps:
        fail(
            f"Attendu un pas d'optimisation par mini-batch, {expected_steps} ici ({INPUTS.n_epochs} "
            f"époques de {batches_per_epoch()} mini-batchs) ; `optimizer.step()` a été appelé "
            f"{artifact['steps']} fois."
        )
    rows = [f["rows"] for f in artifact["forwards"] if f["training"] and not f["val"]]
    if rows != training.batch_rows:
        fail(
            f"Les mini-batchs n'ont pas les bonnes tailles (attendu {training.batch_rows[: batches_per_epoch()]} "
            f"à chaque époque, vu {rows[: batches_per_epoch()]}…) : prenez les tranches successives "
            "`order[start : start + batch_size]` pour `start` dans `range(0, len(train_x), batch_size)`."
        )
    fail(
        "Les poids après l'entraînement ne sont pas ceux de la référence, avec le même réseau, les "
        "mêmes données et la même graine. Vérifiez : un seul `torch.randperm(len(train_x))` par "
        "époque, au début, et aucun autre tirage aléatoire ; les mini-batchs pris dans cet ordre ; "
        "`optimizer.zero_grad()` avant chaque `loss.backward()` ; l'entropie croisée moyenne du "
        "mini-batch (`cross_entropy(model(x), y)`)."
    )


@hidden_check("train_epochs/train_losses", points=1)
def test_train_losses(artifact: Artifact) -> None:
    training = reference_training()
    values = artifact["train_losses"]
    if _close(values, training.train_losses) or _close(values, training.row_mean_losses):
        return
    if _close(values, [v * batches_per_epoch() for v in training.train_losses]):
        fail(
            "La perte d'entraînement renvoyée est la somme des pertes des mini-batchs de l'époque : "
            "divisez-la par leur nombre, pour que les deux courbes soient à la même échelle."
        )
    moved = (
        ""
        if _weights_match(artifact, training.weights)
        else (" (les poids diffèrent déjà de ceux de la référence : corrigez d'abord la boucle)")
    )
    fail(
        "La perte d'entraînement de chaque époque doit être la moyenne des pertes de ses "
        f"mini-batchs (`loss.item()` à chaque mini-batch) ; attendu {np.round(training.train_losses, 4).tolist()}, "
        f"reçu {values}{moved}."
    )


@hidden_check("train_epochs/val_losses", points=1)
def test_val_losses(artifact: Artifact) -> None:
    training = reference_training()
    values = artifact["val_losses"]
    if _close(values, training.val_losses):
        return
    moved = (
        ""
        if _weights_match(artifact, training.weights)
        else (" (les poids diffèrent déjà de ceux de la référence : corrigez d'abord la boucle)")
    )
    fail(
        "La perte de validation de chaque époque est l'entropie croisée sur tout `val_x`, `val_y`, "
        "calculée après les mini-batchs de l'époque ; attendu "
        f"{np.round(training.val_losses, 4).tolist()}, reçu {values}{moved}."
    )


@hidden_check("train_epochs/eval_no_grad", points=0.5)
def test_eval_no_grad(artifact: Artifact) -> None:
    validation = [f for f in artifact["forwards"] if f["val"]]
    require(
        validation,
        "Le réseau n'a jamais été appliqué à `val_x` : calculez la perte de validation sur les "
        "données de validation reçues en argument.",
    )
    fixes = []
    if any(f["training"] for f in validation):
        fixes.append(
            "en mode entraînement : appelez `model.eval()` avant (avec `Dropout` ou une "
            "normalisation, le résultat changerait), puis `model.train()` pour l'époque suivante"
        )
    if any(f["grad"] for f in validation):
        fixes.append(
            "avec les gradients : mettez-la dans un bloc `with torch.no_grad():` (sinon tout le "
            "graphe de calcul de la validation est gardé en mémoire)"
        )
    require(not fixes, "La perte de validation est calculée " + " ; et ".join(fixes) + ".")


@hidden_check("train_epochs/leaves_arguments", points=0.5)
def test_leaves_arguments(artifact: Artifact) -> None:
    require(
        artifact["training_after"],
        "`train_epochs` rend le modèle en mode évaluation : finissez par `model.train()`.",
    )
    changed = artifact["changed_inputs"]
    require(
        not changed,
        f"`train_epochs` a modifié les tenseurs reçus ({', '.join(changed)}) : ne les changez pas en "
        "place, prenez des mini-batchs avec `train_x[index]` (une copie).",
    )
