"""Hidden checks of ``train``: the fixed per-sample loop of the TD.

The probe ran the student's ``train`` on a fresh ``ConvNet`` (fixed seed), plain SGD and a
fixed slice of data, and traced forward (F), backward (B), zero_grad (Z) and each step with
the gradient it used (S: the last backward's, A: accumulated, 0: none).
"""

from __future__ import annotations

import re

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS, described, initial_weights, reference_training, require_untouched

EXPECTED_FORWARDS = INPUTS.train_samples * INPUTS.train_epochs
STEPS = "SA0"


def _segments(events: str) -> list[str]:
    """What happens after each forward pass (the events before the first one are dropped)."""
    return events.split("F")[1:]


def _history(artifact: Artifact) -> list[float]:
    history = artifact["loss_history"]
    if history is None:
        returned = artifact["returned"]["type"]
        if returned == "builtins.NoneType":
            fail("`train` ne renvoie rien : ajoutez `return loss_history` à la fin de la fonction.")
        fail(f"`train` doit renvoyer une liste de pertes (des nombres) ; reçu : {returned}.")
    return history


@hidden_check("train/returns_history", points=1)
def test_returns_history(artifact: Artifact) -> None:
    history = _history(artifact)
    returned = artifact["returned"]
    require(
        returned.get("list"),
        f"`train` doit renvoyer une liste Python de pertes (le test visible le vérifie) ; reçu : {described(artifact)}. "
        "Construisez `loss_history = []` et faites un `append` par époque.",
    )
    items = set(returned.get("items") or [])
    require(
        "tensor_grad" not in items,
        "`train` renvoie des tenseurs encore attachés au graphe de calcul : ajoutez les pertes avec "
        "`loss.item()`, qui donne un nombre Python (et libère le graphe).",
    )
    require(
        items <= {"number", "tensor"}, "Les pertes renvoyées par `train` doivent être des nombres."
    )
    require(
        len(history) == INPUTS.train_epochs,
        f"`train` a renvoyé {len(history)} valeurs pour {INPUTS.train_epochs} époques : "
        "on attend une perte moyenne par époque (un `append` par époque, après la boucle sur les données).",
    )
    require(
        all(np.isfinite(history)),
        "Les pertes renvoyées par `train` ne sont pas toutes des nombres finis.",
    )


@hidden_check("train/step_called", points=2)
def test_step_called(artifact: Artifact) -> None:
    events = artifact["events"]
    require(
        "F" in events,
        "`train` n'a jamais appelé le modèle passé en argument : utilisez `model`, pas une variable globale.",
    )
    require(
        any(c in events for c in STEPS),
        "`optimizer.step()` n'est jamais appelé (sur l'optimiseur passé en argument) : `backward()` "
        "calcule les gradients mais seul `step()` modifie les poids. Sans lui le modèle reste au hasard "
        "(10 % d'exactitude). Ajoutez `optimizer.step()` juste après `loss.backward()`.",
    )


@hidden_check("train/zero_grad_order", points=1)
def test_zero_grad_order(artifact: Artifact) -> None:
    segments = _segments(artifact["events"])
    step_before_backward = any(
        re.search(f"^[^B]*[{STEPS}]", s) for s in segments if re.search(f"[{STEPS}]", s)
    )
    require(
        not step_before_backward,
        "`optimizer.step()` est appelé avant `loss.backward()` : chaque pas utilise des gradients nuls ou "
        "ceux de l'échantillon précédent. L'ordre est : zero_grad → sortie et perte → backward → step.",
    )
    # Only judged when a step follows: with no step at all (the TD's loop), the order of zero_grad
    # and backward cannot be told apart and train/step_called already says what to add.
    zero_between = any(re.search(f"B[^{STEPS}F]*Z[^{STEPS}F]*[{STEPS}]", s) for s in segments)
    require(
        not zero_between,
        "`zero_grad()` est appelé entre `backward()` et `step()` : il efface les gradients que `backward()` "
        "vient de calculer, donc `step()` ne fait rien. Appelez `zero_grad()` au début de l'itération "
        "(ou après `step()`).",
    )


@hidden_check("train/gradients_reset", points=1)
def test_gradients_reset(artifact: Artifact) -> None:
    require(
        "A" not in artifact["events"],
        "Les gradients ne sont pas remis à zéro entre deux échantillons : `backward()` les additionne, "
        "donc chaque pas utilise la somme des gradients de tous les échantillons précédents. "
        "Appelez `optimizer.zero_grad()` à chaque itération.",
    )


@hidden_check("train/one_step_per_sample", points=1)
def test_one_step_per_sample(artifact: Artifact) -> None:
    events = artifact["events"]
    steps = sum(events.count(c) for c in STEPS)
    backwards = events.count("B")
    require(
        steps <= max(backwards, 1),
        f"`optimizer.step()` est appelé {steps} fois pour {backwards} appels à `backward()` : un seul pas "
        "par échantillon, sinon chaque gradient est appliqué plusieurs fois.",
    )


@hidden_check("train/uses_arguments", points=1)
def test_uses_arguments(artifact: Artifact) -> None:
    sums = artifact["input_sums"] or []
    require(
        sums,
        "Le modèle passé en argument n'a reçu aucune image : `train` doit entraîner `model` (son "
        "argument) avec `optimizer`, pas une variable globale du notebook.",
    )
    require(
        len(sums) == EXPECTED_FORWARDS,
        f"`train` a passé {len(sums)} images dans le modèle au lieu de {INPUTS.train_samples} images × "
        f"{INPUTS.train_epochs} époques : utilisez le `dataset` et le `n_epochs` passés en argument, pas des "
        "variables globales ni des valeurs écrites en dur.",
    )
    require_untouched(artifact, "train", ("dataset",))
    require(
        set(artifact["batch_sizes"] or []) <= {1},
        "`train` doit parcourir les données échantillon par échantillon (lots de taille 1) comme dans le TD.",
    )
    require(
        np.allclose(sums, reference_training().input_sums, rtol=1e-4, atol=1e-3),
        "Les images passées au modèle ne sont pas celles du `dataset` donné, dans son ordre : parcourez "
        "`dataset` tel quel (sans mélange, sans autre source de données).",
    )


@hidden_check("train/matches_reference", points=2)
def test_matches_reference(artifact: Artifact) -> None:
    expected = reference_training().weights
    got = artifact.arrays
    require(
        set(expected) <= set(got) and all(got[k].shape == v.shape for k, v in expected.items()),
        "Les poids du modèle après `train` n'ont pas pu être relus : le modèle passé en argument a-t-il été remplacé ?",
    )
    worst = max(float(np.max(np.abs(got[k] - v))) for k, v in expected.items())
    if all(np.array_equal(got[k], v) for k, v in initial_weights().items()):
        fail(
            "Les poids du modèle n'ont pas changé pendant `train` : aucun pas d'optimisation n'a eu lieu sur "
            "le modèle passé en argument. Vérifiez que `optimizer.step()` est appelé après `loss.backward()`, "
            "sans `zero_grad()` entre les deux."
        )
    require(
        all(np.allclose(got[k], v, rtol=1e-4, atol=1e-6) for k, v in expected.items()),
        "Après `train`, les poids diffèrent de ceux de la solution de référence entraînée sur les mêmes "
        f"données, dans le même ordre, depuis les mêmes poids initiaux (écart maximal {worst:.2e}). "
        "Vérifiez l'ordre zero_grad → backward → step et la perte (entropie croisée).",
    )


@hidden_check("train/loss_history", points=1)
def test_loss_history(artifact: Artifact) -> None:
    history = np.asarray(_history(artifact), dtype=np.float64)
    training = reference_training()
    expected = np.asarray(training.loss_history)
    frozen = np.asarray(training.frozen_loss_history)
    require(history.shape == expected.shape, "Une perte par époque est attendue (voir ci-dessus).")
    # Tight: with few samples and a small learning rate the first epoch's mean barely moves.
    if np.allclose(history, expected, rtol=1e-4, atol=1e-6):
        return
    n = INPUTS.train_samples
    if any(np.allclose(history, n * losses, rtol=1e-3) for losses in (expected, frozen)):
        fail(
            "`train` renvoie la somme des pertes de chaque époque, pas leur moyenne : divisez par le "
            "nombre d'images (`dataset.num_rows`) pour que les époques soient comparables."
        )
    if np.allclose(history, frozen, rtol=1e-4, atol=1e-6):
        fail(
            f"Les pertes renvoyées ({np.round(history, 4).tolist()}) sont celles du modèle de départ, les "
            "mêmes à chaque époque : les poids ne changent jamais pendant `train`. Corrigez la boucle "
            "(voir `step()` et `zero_grad()` ci-dessus) ; les pertes suivront."
        )
    fail(
        f"Les pertes moyennes par époque ({np.round(history, 4).tolist()}) diffèrent de celles de la "
        f"référence ({np.round(expected, 4).tolist()}) sur les mêmes données : moyenne des pertes de chaque "
        "époque (somme des `loss.item()` divisée par le nombre d'images), avec la boucle corrigée."
    )
