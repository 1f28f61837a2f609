"""Hidden checks of ``plot_learning_curve``: the probe passed a fixed, non-monotone loss list."""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS

CURVE = np.asarray(INPUTS.curve)
EPOCHS = np.arange(1, len(CURVE) + 1)


def _lines(artifact: Artifact) -> list[dict]:
    return [line for ax in artifact["axes"] for line in ax["lines"]]


@hidden_check("learning_curve/returns_figure", points=0.5)
def test_returns_figure(artifact: Artifact) -> None:
    require(
        artifact["axes"],
        "`plot_learning_curve` doit renvoyer la figure matplotlib (`fig`), par exemple avec "
        f"`fig, ax = plt.subplots()` puis `return fig` ; reçu : {artifact['returned']['type']}.",
    )
    require(
        _lines(artifact), "La figure renvoyée ne contient aucune courbe : tracez-la avec `ax.plot`."
    )


@hidden_check("learning_curve/line_data", points=1)
def test_line_data(artifact: Artifact) -> None:
    lines = [
        line for line in _lines(artifact) if line["y"] is not None and len(line["y"]) == len(CURVE)
    ]
    if not any(np.allclose(line["y"], CURVE) for line in lines):
        fail(
            "La courbe tracée n'est pas la liste `loss_history` passée en argument (valeurs attendues : "
            f"{CURVE.tolist()}) : tracez exactement les pertes reçues, pas une variable globale ni une "
            "version transformée."
        )
    matching = [line for line in lines if np.allclose(line["y"], CURVE)]
    if not any(line["x"] is not None and np.allclose(line["x"], EPOCHS) for line in matching):
        fail(
            "En abscisse on attend le numéro d'époque, de 1 à n : passez `range(1, len(loss_history) + 1)` "
            "comme abscisses (par défaut matplotlib commence à 0)."
        )


@hidden_check("learning_curve/labels", points=0.5)
def test_labels(artifact: Artifact) -> None:
    require(
        any(ax["xlabel"].strip() and ax["ylabel"].strip() for ax in artifact["axes"]),
        'Nommez les deux axes (`ax.set_xlabel("Époque")`, `ax.set_ylabel("Perte moyenne")`) : '
        "une courbe sans unités ne se lit pas.",
    )
