"""Hidden checks of ``plot_losses``: the probe passed two fixed loss lists, the validation one
not monotone."""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS

TRAIN = np.asarray(INPUTS.curve_train)
VAL = np.asarray(INPUTS.curve_val)
EPOCHS = np.arange(1, len(TRAIN) + 1)


def _lines(artifact: Artifact) -> list[dict]:
    return [line for ax in artifact["axes"] for line in ax["lines"]]


def _plotting(artifact: Artifact, values: np.ndarray) -> list[dict]:
    return [
        line
        for line in _lines(artifact)
        if line["y"] is not None
        and len(line["y"]) == len(values)
        and np.allclose(line["y"], values)
    ]


@hidden_check("plot_losses/returns_figure", points=0.5)
def test_returns_figure(artifact: Artifact) -> None:
    require(
        artifact["axes"],
        "`plot_losses` doit renvoyer la figure matplotlib (`fig`), par exemple avec "
        f"`fig, ax = plt.subplots()` puis `return fig` ; reçu : {artifact['returned']['type']}.",
    )
    require(
        _lines(artifact),
        "La figure renvoyée ne contient aucune courbe : tracez-les avec `ax.plot`.",
    )


@hidden_check("plot_losses/line_data", points=1)
def test_line_data(artifact: Artifact) -> None:
    for name, values in (("train_losses", TRAIN), ("val_losses", VAL)):
        matching = _plotting(artifact, values)
        if not matching:
            fail(
                f"Aucune courbe de la figure n'est la liste `{name}` passée en argument (valeurs "
                f"attendues : {values.tolist()}) : tracez les deux listes reçues, telles quelles, "
                "pas une variable globale."
            )
        if not any(line["x"] is not None and np.allclose(line["x"], EPOCHS) for line in matching):
            fail(
                "En abscisse on attend le numéro d'époque, de 1 à n : passez "
                "`range(1, len(train_losses) + 1)` comme abscisses (par défaut matplotlib commence à 0)."
            )


@hidden_check("plot_losses/labels", points=0.5)
def test_labels(artifact: Artifact) -> None:
    require(
        any(ax["xlabel"].strip() and ax["ylabel"].strip() for ax in artifact["axes"]),
        'Nommez les deux axes (`ax.set_xlabel("Époque")`, `ax.set_ylabel("Perte")`).',
    )
    require(
        artifact["figure_legend"] or any(ax["legend"] for ax in artifact["axes"]),
        "La figure n'a pas de légende : on ne sait pas quelle courbe est l'entraînement et laquelle "
        'la validation. Donnez `label="entraînement"` et `label="validation"` aux deux `ax.plot` '
        "puis appelez `ax.legend()`.",
    )
    # A curve missing from the figure is charged by line_data, not here.
    for name, values, words, wanted in (
        ("train_losses", TRAIN, ("entra", "train"), "entraînement"),
        ("val_losses", VAL, ("val",), "validation"),
    ):
        labels = [line["label"] for line in _plotting(artifact, values)]
        require(
            not labels or any(word in label.lower() for label in labels for word in words),
            f'La courbe de `{name}` doit porter la légende « {wanted} » (`label="{wanted}"`) ; '
            f"reçu : {', '.join(repr(label) for label in labels)}.",
        )
