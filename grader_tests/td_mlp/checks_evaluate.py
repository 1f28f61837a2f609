"""Hidden checks of ``evaluate``: the grader's network in training mode on 60 rows, then in
eval mode on the first 17 rows (about two labels in three are the network's own prediction)."""

from __future__ import annotations

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import described, reference_accuracies

TOLERANCE = 1e-6  # a proportion of a few dozen rows: exact up to float32 rounding


@hidden_check("evaluate/returns_proportion", points=0.5)
def test_returns_proportion(artifact: Artifact) -> None:
    require(
        artifact["returned"]["float"],
        "`evaluate` doit renvoyer un `float` Python (par exemple `float(...)` ou `.item()`) ; "
        f"reçu : {described(artifact['returned'])}.",
    )
    value = artifact["values"][0]
    if value is not None and 1.0 < value <= 100.0:
        fail(
            f"`evaluate` renvoie {value:g} : un pourcentage. On attend une proportion entre 0 et 1 "
            '(ne multipliez pas par 100 ; pour l\'afficher en pour cent, `f"{acc:.1%}"`).'
        )
    require(
        value is not None and 0.0 <= value <= 1.0,
        f"`evaluate` doit renvoyer une proportion entre 0 et 1 ; reçu : {value}.",
    )


@hidden_check("evaluate/matches_reference", points=1)
def test_matches_reference(artifact: Artifact) -> None:
    for got, expected, rows in zip(artifact["values"], reference_accuracies(), ("60", "17")):
        if got is None:
            fail(f"`evaluate` ne renvoie pas un nombre ; reçu : {described(artifact['returned'])}.")
        # A percentage is charged once, by returns_proportion.
        value = got / 100.0 if 1.0 < got <= 100.0 else got
        require(
            abs(value - expected) <= TOLERANCE,
            f"Sur {rows} lignes, l'exactitude attendue est {expected:.4f}, `evaluate` renvoie "
            f"{got:.4f} : comparez `model(x).argmax(dim=1)` (la classe de plus grand logit) avec `y`, "
            "et divisez le nombre de bonnes réponses par le nombre de lignes de `x`.",
        )


@hidden_check("evaluate/leaves_mode", points=0.5)
def test_leaves_mode(artifact: Artifact) -> None:
    effects = artifact["side_effects"]
    require(
        "mode" not in effects,
        "`evaluate` ne rend pas le modèle dans le mode où elle l'a reçu : notez "
        "`was_training = model.training` au début et finissez par `model.train(was_training)` "
        "(un modèle en mode évaluation y reste, un modèle en entraînement y revient).",
    )
    require(
        "weights" not in effects,
        "`evaluate` a modifié les poids du modèle : elle doit seulement s'en servir.",
    )
    require(
        "requires_grad" not in effects,
        "`evaluate` a changé `requires_grad` des paramètres : utilisez `with torch.no_grad():`, qui "
        "ne touche pas au modèle.",
    )
    require(
        "hooks" not in effects, "`evaluate` laisse un hook enregistré sur le modèle : retirez-le."
    )
    require(
        "inputs" not in effects, "`evaluate` a modifié `x` ou `y` : ne les changez pas en place."
    )
