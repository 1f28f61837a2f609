"""Read the probe's artifacts: the one piece of tdkit the hidden checks import.

Arrays are loaded with ``allow_pickle=False``: an artifact can never run code on the
trusted side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Artifact:
    """What the probe recorded for one group of checks."""

    group: str
    status: str  # "ok", "error", "missing", or "absent" when the probe never wrote it
    record: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error(self) -> str:
        return str(self.record.get("error", ""))

    def __getitem__(self, key: str) -> Any:
        return self.record.get(key)


def read_artifact(directory: str | Path, group: str) -> Artifact:
    """The artifact of ``group`` in ``directory``; a missing or unreadable one is "absent"."""
    base = Path(directory)
    try:
        record = json.loads((base / f"{group}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Artifact(group, "absent")
    if not isinstance(record, dict):
        return Artifact(group, "absent")
    arrays: dict[str, np.ndarray] = {}
    npz = base / f"{group}.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as loaded:
                arrays = {name: loaded[name] for name in loaded.files}
        except (OSError, ValueError):
            arrays = {}
    return Artifact(group, str(record.get("status", "absent")), record, arrays)


def unusable_message(artifact: Artifact) -> str:
    """Why a group's checks have nothing to judge, in French for the student: the function was
    never defined, it raised on the grader's inputs, or the run stopped before the probe."""
    function = artifact.record.get("function") or artifact.group
    if artifact.status == "missing":
        return (
            f"`{function}` n'est pas définie après l'exécution du notebook : sa cellule s'est sans "
            "doute arrêtée sur une erreur avant la ligne `def` ou `class` (voir les erreurs de "
            "cellules du rapport), ou elle a été supprimée ou renommée. Corrigez l'erreur et gardez "
            "le nom et la signature : le correcteur l'appelle."
        )
    if artifact.status == "error":
        last = artifact.error.strip().splitlines()[-1:] or [""]
        if last[0].startswith("NotImplementedError"):
            return (
                f"`{function}` n'est pas encore écrite : elle lève toujours `NotImplementedError`. "
                "Remplacez `raise NotImplementedError()` par votre code."
            )
        return (
            f"`{function}` a levé une erreur sur les données du correcteur : {last[0]}\n"
            "Le détail est dans le rapport ; essayez-la sur de petites entrées, comme dans les tests "
            "visibles."
        )
    return (
        f"Le notebook n'a pas pu être exécuté jusqu'à l'appel de `{function}` (erreur, temps "
        "dépassé ou noyau arrêté) : aucun résultat à vérifier."
    )
