"""Hidden checks of ``MLP``: ``MLP()`` and ``MLP(hidden=(24, 12), n_classes=7)``."""

from __future__ import annotations

import numpy as np

from tdkit.trusted.artifacts import Artifact
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import INPUTS, described, reference_forward, reference_shapes

CUSTOM = f"MLP(hidden={INPUTS.hidden}, n_classes={INPUTS.n_classes})"


def _shapes(shapes: list[list[int]] | None) -> str:
    return ", ".join(str(tuple(s)) for s in shapes or []) or "aucun paramètre"


@hidden_check("model/parameter_shapes", points=1.5)
def test_parameter_shapes(artifact: Artifact) -> None:
    require(
        artifact["module"],
        "`MLP()` doit être un `torch.nn.Module` : `class MLP(torch.nn.Module)` et "
        "`super().__init__()` au début de `__init__`.",
    )
    for call, got, expected in (
        ("MLP()", artifact["default_shapes"], reference_shapes()),
        (
            CUSTOM,
            artifact["custom_shapes"],
            reference_shapes(hidden=INPUTS.hidden, n_classes=INPUTS.n_classes),
        ),
    ):
        require(
            got == expected,
            f"Les paramètres de `{call}` (dans l'ordre de `model.parameters()`) doivent avoir les "
            f"formes {_shapes(expected)} ; reçu : {_shapes(got)}. Une couche `Linear` par élément "
            "de `hidden` puis une vers `n_classes`, créées de l'entrée vers la sortie, sans autre "
            "couche à paramètres.",
        )


@hidden_check("model/forward", points=1.5)
def test_forward(artifact: Artifact) -> None:
    if artifact["forward_error"] is not None:
        fail(f"`{CUSTOM}` a levé une erreur sur des lignes (N, 3072) : {artifact['forward_error']}")
    expected_shape = (INPUTS.forward_rows, INPUTS.n_classes)
    output = artifact.arrays.get("output")
    require(
        output is not None and output.shape == expected_shape,
        f"Sur {INPUTS.forward_rows} lignes de 3072 valeurs, `{CUSTOM}` doit renvoyer les logits de "
        f"forme {expected_shape} ; reçu : {described(artifact['output'])}.",
    )
    expected = reference_shapes(hidden=INPUTS.hidden, n_classes=INPUTS.n_classes)
    if artifact["custom_shapes"] != expected:
        fail(
            "Les formes des paramètres ne sont pas celles attendues (voir « le réseau », "
            "`model/parameter_shapes`) : le calcul de `forward` ne peut pas être comparé."
        )
    parameters = [artifact.arrays[f"param_{i}"] for i in range(len(expected))]
    require(
        np.allclose(output, reference_forward(parameters), rtol=1e-4, atol=1e-5),
        "`forward` ne calcule pas ce qu'on attend avec ces poids : chaque couche linéaire suivie "
        "d'un `ReLU`, sauf la dernière, qui renvoie les logits sans activation (pas de `softmax` : "
        "`cross_entropy` l'applique elle-même).",
    )
