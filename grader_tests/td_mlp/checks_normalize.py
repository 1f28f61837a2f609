"""Hidden checks of ``normalize``: called on uint8 images and on the same images as float64."""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS, described, hwc_normalized, reference_normalized, require_call

SHAPE = (INPUTS.n_images, 3 * 32 * 32)
ATOL = 1e-5  # float32 z-scores of a few units: rounding differs below 1e-6


@hidden_check("normalize/returns_tensor", points=1)
def test_returns_tensor(artifact: Artifact) -> None:
    call = artifact["calls"]["uint8"]
    require_call(call, "normalize")
    returned = call["returned"]
    require(
        returned["tensor"] and returned.get("dtype") == "torch.float32",
        "`normalize` doit renvoyer un tenseur `torch.float32` (par exemple "
        "`torch.as_tensor(images, dtype=torch.float32)` avant le calcul) ; reçu : "
        f"{described(returned)}.",
    )
    require(
        tuple(returned["shape"]) == SHAPE,
        f"Sur {SHAPE[0]} images, `normalize` doit renvoyer la forme {SHAPE} (une ligne de "
        f"3 × 32 × 32 valeurs par image) ; reçu : {tuple(returned['shape'])}.",
    )


@hidden_check("normalize/matches_reference", points=2)
def test_matches_reference(artifact: Artifact) -> None:
    expected = reference_normalized()
    for kind in ("uint8", "float64"):
        require_call(artifact["calls"][kind], "normalize")
        value = artifact.arrays.get(kind)
        if value is None or value.size != expected.size:
            fail(
                f"Sur des images {kind} de forme {(INPUTS.n_images, 32, 32, 3)}, `normalize` doit "
                f"renvoyer {expected.size} valeurs, {SHAPE[1]} par image ; reçu : "
                f"{described(artifact['calls'][kind]['returned'])}."
            )
        value = value.reshape(expected.shape).astype(np.float64)
        if np.allclose(value, expected, atol=ATOL):
            continue
        if np.allclose(value, hwc_normalized(), atol=ATOL):
            fail(
                "Les Z-scores sont justes mais mis à plat dans l'ordre (H, W, C) : les canaux sont "
                "entrelacés. L'ordre attendu est celui de PyTorch, (C, H, W) : permutez les axes "
                "avant de mettre à plat, `z.permute(0, 3, 1, 2).reshape(len(z), -1)` (ou "
                "`np.transpose(z, (0, 3, 1, 2))`)."
            )
        fail(
            f"Sur des images {kind}, les valeurs ne sont pas les Z-scores attendus : pour chaque "
            "canal c, `(x - mean[c]) / std[c]` avec la moyenne et l'écart-type reçus en argument "
            "(ceux de l'entraînement, un par canal), pas l'écart-type ou la moyenne des images "
            "reçues ; puis la mise à plat dans l'ordre (C, H, W)."
        )


@hidden_check("normalize/input_untouched", points=1)
def test_input_untouched(artifact: Artifact) -> None:
    for call in artifact["calls"].values():
        require_call(call, "normalize")
        require(
            not call["side_effects"],
            f"`normalize` a modifié ses arguments ({', '.join(call['side_effects'])}) : une "
            "opération en place comme `images -= mean` écrase le tableau de l'appelant. Écrivez "
            "`z = (x - mean) / std`, qui crée un nouveau tableau.",
        )
