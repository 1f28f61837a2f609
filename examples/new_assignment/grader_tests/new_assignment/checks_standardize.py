"""Hidden checks of ``standardize``, against the reference computed here (trusted side)."""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import hidden_check, require

from .probe import grading_rows


def reference() -> np.ndarray:
    rows = grading_rows()
    return (rows - rows.mean(axis=0)) / rows.std(axis=0)


@hidden_check("standardize/matches_reference", points=1.5)
def test_matches_reference(artifact: Artifact) -> None:
    value = artifact.arrays.get("value")
    require(
        value is not None and value.shape == reference().shape,
        f"`standardize` doit renvoyer un tableau de forme {reference().shape}, comme `x`.",
    )
    require(
        np.allclose(value, reference(), atol=1e-6),
        "Les colonnes ne sont pas standardisées une à une : soustrayez `x.mean(axis=0)` et divisez "
        "par `x.std(axis=0)` (moyenne et écart type de chaque colonne, pas du tableau entier).",
    )


@hidden_check("standardize/leaves_input", points=0.5)
def test_leaves_input(artifact: Artifact) -> None:
    require(
        "x" not in artifact["side_effects"],
        "`standardize` a modifié le tableau reçu : calculez un nouveau tableau au lieu de `x -= ...`.",
    )
