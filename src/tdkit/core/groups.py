"""The check groups: one per student function the grader judges, in the order the notebook asks for them.

The one list the probe (what it calls), the hidden checks (``@hidden_check("<group>/<name>")``) and the
reports (headings, order) read. Each group's probe is registered beside its code in
``tdkit.untrusted.probe``, which refuses to load with a group left without one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckGroup:
    name: str  # the group of check ids, ``<name>/<check>``, and of the probe's artifact ``<name>.json``
    function: str  # the student function the probe calls
    label: str  # French, the heading of the group in the feedback page


CHECK_GROUPS = (
    CheckGroup("train", "train", "boucle d'entraînement"),
    CheckGroup("learning_curve", "plot_learning_curve", "courbe d'apprentissage"),
    CheckGroup("predict", "predict", "prédictions"),
    CheckGroup("accuracy", "accuracy", "exactitude"),
    CheckGroup("confusion_matrix", "confusion_matrix", "matrice de confusion"),
    CheckGroup("per_class_accuracy", "per_class_accuracy", "exactitude par classe"),
    CheckGroup("activation_maps", "activation_maps", "cartes d'activation"),
)
GROUPS = tuple(group.name for group in CHECK_GROUPS)
BY_NAME = {group.name: group for group in CHECK_GROUPS}
