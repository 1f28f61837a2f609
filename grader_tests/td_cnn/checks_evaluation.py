"""Hidden checks of ``predict``, ``accuracy``, ``confusion_matrix`` and ``per_class_accuracy``.

All run on a fixed model (fixed seed) and fixed rows in which one class is absent. What each
function must return and accept is in ``REQUIREMENTS.md``. ``accuracy`` and
``confusion_matrix`` ran twice in the probe (``tdkit.untrusted.probe``): as written, and alone,
with the grader's stand-ins in place of the student's other functions. The run as written is
judged, unless a function it built on fails its own checks (``judged`` below).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import reference
from tdkit.trusted.artifacts import Artifact, read_artifact, unusable_message
from tdkit.trusted.checks import fail, hidden_check, require

from .oracle import (
    INPUTS,
    described,
    eval_datasets,
    grader_accuracies,
    grader_confusion,
    grading_data,
    reference_accuracies,
    reference_confusion,
    reference_predictions,
    require_untouched,
    returned_array,
)

# What predict, accuracy and confusion_matrix must leave as they found it.
EVALUATION_EFFECTS = ("weights", "mode", "requires_grad", "hooks", "dataset")
# The functions the probe ran twice: as written and alone (tdkit.untrusted.probe._run_twice).
TWO_RUNS = ("accuracy", "confusion_matrix")


@pytest.fixture
def artifact(artifact: Artifact, artifacts_dir: Path) -> Artifact:
    """The group's artifact, with the run that is judged for a function that ran twice."""
    return judged(artifact, artifacts_dir)


def judged(artifact: Artifact, artifacts_dir: Path, seen: frozenset[str] = frozenset()) -> Artifact:
    """The run of ``accuracy`` or ``confusion_matrix`` that decides its points.

    As written, with the student's own functions, unless one of those it called (directly or
    through another) fails its own checks: then the run alone, with the grader's stand-ins,
    which either earns the points with the run as written. A function that raises as written
    while its own helpers pass their checks fails with that error.
    """
    if artifact.group not in TWO_RUNS:
        return artifact
    runs = artifact["runs"]
    written, alone = runs["written"], runs["alone"]
    failing = failing_helpers(artifact, artifacts_dir, seen | {artifact.group})
    run = "alone" if failing and alone["error"] is None else "written"
    if runs[run]["error"] is not None:
        raised = {**artifact.record, "error": runs[run]["error"]}
        fail(unusable_message(Artifact(artifact.group, "error", raised)))
    chosen = runs[run]
    values = chosen.get("values") or [None]
    record = {
        **artifact.record,
        "judged": run,
        "returned": chosen["returned"],
        "value": values[0],
        "subset_values": values[1:],
        "side_effects": chosen["side_effects"],
        "stand_ins_called": alone.get("stand_ins_called") or [],
        "written": {"values": written.get("values"), "error": written["error"]},
        "failing": failing,
    }
    arrays = dict(artifact.arrays)
    arrays.pop("alone", None)
    if run in artifact.arrays:
        arrays["value"] = artifact.arrays[run]
    return Artifact(artifact.group, artifact.status, record, arrays)


def failing_helpers(artifact: Artifact, artifacts_dir: Path, seen: frozenset[str]) -> list[str]:
    """The student's own functions that ``artifact``'s function called, directly or through
    another of them, and that fail their own checks."""
    failing: list[str] = []
    for helper in artifact["runs"]["alone"].get("stand_ins_called") or []:
        if helper in seen:
            continue
        found = read_artifact(artifacts_dir, helper)
        if not _passes_own_checks(found, artifacts_dir, seen | {helper}):
            failing.append(helper)
        elif helper in TWO_RUNS:
            failing += [
                f
                for f in failing_helpers(found, artifacts_dir, seen | {helper})
                if f not in failing
            ]
    return failing


def _passes_own_checks(found: Artifact, artifacts_dir: Path, seen: frozenset[str]) -> bool:
    """Whether every check of ``found``'s group passes on it, as its own checks decide."""
    if not found.ok:
        return False
    noop: Callable[[str, object], None] = lambda _name, _value: None
    try:
        view = judged(found, artifacts_dir, seen)
        for check in _checks_of(found.group):
            wanted = inspect.signature(check).parameters
            check(view, **({"record_property": noop} if "record_property" in wanted else {}))
    except (Exception, pytest.fail.Exception):  # noqa: BLE001 - a check that breaks fails
        return False
    return True


def _checks_of(group: str) -> list[Callable[..., None]]:
    """The checks of ``group`` in this module, found by their @hidden_check marker."""
    checks = []
    for value in globals().values():
        for mark in getattr(value, "pytestmark", []):
            if mark.name == "hidden_check" and mark.kwargs["id"].startswith(f"{group}/"):
                checks.append(value)
    return checks


@hidden_check("predict/returns_int_array", points=0.5)
def test_predict_returns_int_array(artifact: Artifact) -> None:
    returned = artifact["returned"]
    if returned.get("tensor"):
        fail(
            f"`predict` renvoie un tenseur torch ({described(artifact)}) : l'énoncé et le test visible "
            "attendent un tableau NumPy. Convertissez à la fin avec `.numpy()`."
        )
    require(
        returned.get("ndarray"),
        f"`predict` doit renvoyer un tableau NumPy (`np.ndarray`) d'entiers ; reçu : {described(artifact)}.",
    )
    predicted = returned_array(artifact, "`predict`")
    n = grading_data().eval.num_rows
    require(
        predicted.shape == (n,),
        f"`predict` doit renvoyer un tableau de forme ({n},), une classe par image ; reçu la forme "
        f"{tuple(predicted.shape)}. Prenez l'`argmax` des sorties sur la dimension des classes.",
    )
    require(
        np.issubdtype(predicted.dtype, np.integer),
        f"`predict` doit renvoyer des indices de classe entiers, pas des scores ({predicted.dtype}).",
    )


@hidden_check("predict/matches_reference", points=1)
def test_predict_matches_reference(artifact: Artifact) -> None:
    predicted = [returned_array(artifact, "`predict`")]
    predicted += [artifact.arrays.get(f"subset_{n}") for n in INPUTS.accuracy_subsets]
    for got, expected in zip(predicted, reference_predictions()):
        require(
            got is not None and got.shape == expected.shape,
            f"Sur un dataset de {len(expected)} images, `predict` doit renvoyer {len(expected)} prédictions : "
            "prédisez sur le `dataset` passé en argument (pas sur une variable globale).",
        )
        agreement = float(np.mean(got == expected))
        require(
            agreement == 1.0,
            f"Les prédictions ne correspondent à celles de la référence que pour {agreement:.0%} des images "
            "(même modèle, mêmes images) : prédisez sur le `dataset` passé en argument, dans l'ordre, avec "
            "le `model` passé en argument.",
        )


@hidden_check("predict/leaves_arguments", points=0.5)
def test_predict_leaves_arguments(artifact: Artifact) -> None:
    require_untouched(artifact, "predict", EVALUATION_EFFECTS)


def _matches(values: list, expected: list[float]) -> bool:
    """Every value equals its expected one, all in proportions or all in percent."""
    if len(values) != len(expected) or any(v is None for v in values):
        return False
    got = np.asarray(values, dtype=np.float64)
    return bool(
        np.allclose(got, expected, atol=1e-9)
        or np.allclose(got, np.multiply(expected, 100), atol=1e-7)
    )


def _accuracy_values(artifact: Artifact) -> list:
    return [artifact["value"], *(artifact["subset_values"] or [])]


def _code(names: list[str]) -> str:
    return " et ".join(f"`{name}`" for name in names)


def _helper_note(artifact: Artifact, what: str, got_here: str) -> str | None:
    """When the function is right but a helper of the student's that fails its own checks makes
    it wrong, say which helper to fix (and only one that fails its checks)."""
    failing = artifact["failing"] or []
    written = artifact["written"] or {}
    if not failing or not (written.get("error") or got_here):
        return None
    called = artifact["stand_ins_called"] or failing
    checked = (
        f"vérifiée avec un {_code(called)} correct, celui du correcteur"
        if len(called) == 1
        else f"vérifiée avec des {_code(called)} corrects, ceux du correcteur"
    )
    own = f"avec votre propre {_code(failing)}"
    outcome = (
        f"elle lève une erreur : {written['error']}"
        if written.get("error")
        else f"elle donne {got_here}"
    )
    return (
        f"{what} est juste ({checked}), mais {own} {outcome} : c'est {_code(failing)} qu'il faut "
        "corriger (voir ses vérifications), pas cette fonction."
    )


@hidden_check("accuracy/range", points=0.5)
def test_accuracy_range(artifact: Artifact) -> None:
    value = artifact["value"]
    require(
        value is not None, f"`accuracy` doit renvoyer un nombre ; reçu : {described(artifact)}."
    )
    require(
        artifact["returned"].get("float"),
        f"`accuracy` doit renvoyer un `float` Python (le test visible le vérifie) ; reçu : {described(artifact)}. "
        "Convertissez le résultat avec `float(...)` (ou `.item()` pour un tenseur).",
    )
    if 1.0 < value <= 100.0:
        fail(
            f"`accuracy` a renvoyé {value:g} : l'exactitude est une proportion entre 0 et 1, pas un pourcentage."
        )
    require(0.0 <= value <= 1.0, f"`accuracy` a renvoyé {value!r}, hors de [0, 1].")


@hidden_check("accuracy/matches_reference", points=1)
def test_accuracy_matches_reference(
    artifact: Artifact, record_property: Callable[[str, object], None]
) -> None:
    datasets = eval_datasets()
    direct = list(reference_accuracies())
    values = _accuracy_values(artifact)
    written = (artifact["written"] or {}).get("values")
    alone = artifact["judged"] == "alone"
    # The right computation in percent passes here: accuracy/range already costs the unit.
    if alone and (_matches(values, direct) or _matches(values, grader_accuracies())):
        if written is None or not _matches(written, direct):
            got = (
                ""
                if written is None
                else f"{written[0]:.4f} au lieu de {direct[0]:.4f} sur {datasets[0].num_rows} images"
            )
            note = _helper_note(artifact, "Votre `accuracy`", got)
            if note:
                record_property("note", note)
        return
    # A helper that fails its checks: the run as written still earns the points when it is right.
    if alone and written is not None and _matches(written, direct):
        return
    with_grader = alone and bool(
        {"predict", "confusion_matrix"} & set(artifact["stand_ins_called"])
    )
    expected = grader_accuracies() if with_grader else direct
    require(
        len(values) == len(datasets) and all(v is not None for v in values),
        "`accuracy` doit renvoyer un nombre pour chaque dataset qu'on lui passe.",
    )
    context = (
        " (avec un `predict` correct, celui du correcteur)"
        if with_grader
        else " avec le même modèle"
    )
    for got, want, rows in zip(values, expected, datasets):
        scale = 100.0 if got > 1.0 else 1.0
        require(
            np.isclose(got / scale, want, atol=1e-9),
            f"Sur {rows.num_rows} images, `accuracy` a renvoyé {got:.4f} alors que la référence trouve {want:.4f}"
            f"{context} : calculez-la sur le `dataset` passé en argument (pas sur une variable globale).",
        )
    require(
        _matches(values, expected),
        "`accuracy` ne renvoie pas ses valeurs dans une seule unité : des proportions entre 0 et 1 "
        "pour chaque dataset.",
    )


@hidden_check("accuracy/leaves_arguments", points=0.5)
def test_accuracy_leaves_arguments(artifact: Artifact) -> None:
    require_untouched(artifact, "accuracy", EVALUATION_EFFECTS)


def _expected_confusion() -> np.ndarray:
    return reference_confusion()


@hidden_check("confusion_matrix/shape", points=0.5)
def test_confusion_shape(artifact: Artifact) -> None:
    require(
        artifact["returned"].get("ndarray"),
        f"`confusion_matrix` doit renvoyer un tableau NumPy (`np.ndarray`, le test visible le vérifie) ; reçu : "
        f"{described(artifact)}. Construisez-la avec `np.zeros((10, 10), dtype=int)`.",
    )
    confusion = returned_array(artifact, "`confusion_matrix`")
    require(
        confusion.shape == (10, 10),
        f"La matrice de confusion a la forme {tuple(confusion.shape)} au lieu de (10, 10) : une classe "
        f"(ici la classe {INPUTS.absent_class}) peut être absente des données ; gardez quand même une ligne et une "
        "colonne par classe (par exemple `np.zeros((10, 10))`, ou `labels=range(10)`).",
    )


def _row_normalised(confusion: np.ndarray) -> bool:
    """Rows that sum to 1 (a row of an absent class may be NaN or 0): proportions, not counts."""
    if confusion.ndim != 2 or np.issubdtype(confusion.dtype, np.integer):
        return False
    rows = confusion.sum(axis=1)
    filled = rows[np.isfinite(rows) & (rows != 0)]
    return filled.size > 0 and bool(np.allclose(filled, 1.0))


@hidden_check("confusion_matrix/counts", points=0.25)
def test_confusion_counts(artifact: Artifact) -> None:
    confusion = returned_array(artifact, "`confusion_matrix`")
    n = grading_data().eval.num_rows
    if _row_normalised(confusion):
        fail(
            "La matrice de confusion est normalisée (chaque ligne somme à 1) : on attend des comptes "
            "d'images (entiers) ; la normalisation, c'est l'exactitude par classe."
        )
    require(
        np.all(np.isfinite(confusion)) and np.allclose(confusion, np.round(confusion)),
        "La matrice de confusion doit contenir des nombres d'images (entiers).",
    )
    require(
        np.issubdtype(confusion.dtype, np.integer),
        f"La matrice de confusion doit être de type entier (le test visible le vérifie) ; reçu le dtype "
        f"{confusion.dtype} : créez-la avec `np.zeros((10, 10), dtype=int)`.",
    )
    # A matrix without a row for the absent class loses its images: confusion_matrix/shape says so.
    require(
        confusion.shape != (10, 10) or np.isclose(confusion.sum(), n),
        f"La matrice de confusion compte {confusion.sum():g} images au lieu de {n} : chaque image du "
        "dataset passé en argument compte exactement une fois.",
    )


def _same_matrix(confusion: np.ndarray | None, expected: np.ndarray) -> bool:
    """Equal counts, or equal proportions for a row-normalised matrix (judged by confusion_matrix/counts)."""
    if confusion is None or confusion.shape != expected.shape:
        return False
    if _row_normalised(confusion):
        totals = expected.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            proportions = np.where(totals > 0, expected / totals, np.nan)
        confusion = np.where(np.isfinite(confusion) & (totals > 0), confusion, np.nan)
        return bool(np.allclose(confusion, proportions, equal_nan=True))
    return bool(np.array_equal(confusion, expected))


@hidden_check("confusion_matrix/orientation", points=1)
def test_confusion_orientation(
    artifact: Artifact, record_property: Callable[[str, object], None]
) -> None:
    confusion = returned_array(artifact, "`confusion_matrix`")
    direct = _expected_confusion()
    written = artifact.arrays.get("written")
    alone = artifact["judged"] == "alone"
    if alone and (_same_matrix(confusion, direct) or _same_matrix(confusion, grader_confusion())):
        if not _same_matrix(written, direct):
            got = (
                ""
                if written is None
                else "une autre matrice que la référence (même modèle, mêmes images)"
            )
            note = _helper_note(artifact, "Votre `confusion_matrix`", got)
            if note:
                record_property("note", note)
        return
    # A helper that fails its checks: the run as written still earns the points when it is right.
    if alone and _same_matrix(written, direct):
        return
    require(confusion.shape == direct.shape, "Forme incorrecte (voir la vérification de forme).")
    with_grader = alone and "predict" in artifact["stand_ins_called"]
    expected = grader_confusion() if with_grader else direct
    if _same_matrix(confusion, expected):
        return
    if np.array_equal(confusion, expected.T):
        fail(
            "La matrice de confusion est transposée : la ligne i doit être la classe vraie i et la colonne j "
            "la classe prédite j (`confusion[vrai, prédit] += 1`)."
        )
    fail(
        "La matrice de confusion diffère de celle de la référence (même modèle, mêmes images) : lignes = "
        "classe vraie, colonnes = classe prédite, une case par couple."
    )


@hidden_check("confusion_matrix/leaves_arguments", points=0.25)
def test_confusion_leaves_arguments(artifact: Artifact) -> None:
    require_untouched(artifact, "confusion_matrix", EVALUATION_EFFECTS)


@hidden_check("per_class_accuracy/matches_reference", points=1)
def test_per_class_accuracy(artifact: Artifact) -> None:
    confusion = grading_data().confusion
    values = returned_array(artifact, "`per_class_accuracy`").astype(np.float64)
    require(
        values.shape == (10,),
        f"`per_class_accuracy` doit renvoyer 10 valeurs ; reçu la forme {values.shape}.",
    )
    expected = reference.per_class_accuracy(confusion)
    present = ~np.isnan(expected)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.diag(confusion) / confusion.sum(axis=0)
    if np.allclose(values[present], precision[present]) and not np.allclose(
        values[present], expected[present]
    ):
        fail(
            "`per_class_accuracy` divise par les sommes des colonnes : c'est la précision (parmi les images "
            "prédites dans la classe, combien le sont à raison). L'exactitude par classe divise la diagonale "
            "par les sommes des lignes (les images vraiment de la classe)."
        )
    if np.allclose(values[present], 100 * expected[present]):
        fail(
            "`per_class_accuracy` renvoie des pourcentages : on attend des proportions entre 0 et 1."
        )
    require(
        np.allclose(values[present], expected[present]),
        "L'exactitude par classe diffère de la référence : pour chaque classe vraie i, "
        "`confusion[i, i] / confusion[i].sum()`.",
    )
    absent = values[~present]
    require(
        np.all(np.isnan(absent) | (absent == 0)),
        "Pour une classe absente des données, l'exactitude n'est pas définie : renvoyez `nan` (ou 0).",
    )
    require_untouched(artifact, "per_class_accuracy", ("confusion",))
