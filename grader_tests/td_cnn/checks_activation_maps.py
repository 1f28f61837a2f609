"""Hidden checks of ``activation_maps``: the PyTorch port of the TD's Keras section IV.

The statement asks for the forward hook to be removed at the end (``handle.remove()``).
"""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import hidden_check, require

from .oracle import (
    INPUTS,
    described,
    reference_maps,
    require_untouched,
    returned_array,
)


@hidden_check("activation_maps/shape_range", points=0.5)
def test_shape_range(artifact: Artifact) -> None:
    require(
        artifact["returned"].get("tensor"),
        f"`activation_maps` doit renvoyer un tenseur torch (l'énoncé et le test visible le demandent) ; reçu : "
        f"{described(artifact)}. Gardez le calcul en torch (ou `torch.as_tensor(...)` à la fin).",
    )
    maps = returned_array(artifact, "`activation_maps`")
    require(
        maps.shape == (INPUTS.n_maps, 28, 28),
        f"`activation_maps` doit renvoyer une carte (28, 28) par image, soit la forme ({INPUTS.n_maps}, 28, 28) ; "
        f"reçu {tuple(maps.shape)}. Sommez la sortie de `conv1` sur la dimension des canaux.",
    )
    require(
        np.all(np.isfinite(maps)) and maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6,
        "Les cartes doivent être à valeurs dans [0, 1] : gardez la partie positive, puis divisez chaque "
        "carte par son maximum.",
    )


@hidden_check("activation_maps/matches_reference", points=1)
def test_matches_reference(artifact: Artifact) -> None:
    maps = returned_array(artifact, "`activation_maps`")
    expected = reference_maps()
    require(maps.shape == expected.shape, "Forme incorrecte (voir la vérification de forme).")
    require(
        np.allclose(maps, expected, atol=1e-4),
        "Les cartes diffèrent de la référence : sortie de `model.conv1` (avec un forward hook), partie "
        "positive, somme sur les canaux, puis division par le maximum de chaque carte.",
    )


@hidden_check("activation_maps/hook_removed", points=0.5)
def test_hook_removed(artifact: Artifact) -> None:
    require_untouched(artifact, "activation_maps", ("hooks", "weights", "requires_grad", "images"))
