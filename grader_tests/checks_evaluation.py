"""Hidden checks of ``predict``, ``accuracy``, ``confusion_matrix`` and ``per_class_accuracy``.

All run on a fixed model (fixed seed) and fixed rows in which one class is absent.
"""

from __future__ import annotations

import numpy as np
from oracle import INPUTS, grading_data, reference_eval_model, returned_array

import reference
from tdkit.artifacts import Artifact
from tdkit.checks import check, fail, require


def _reference_predictions() -> np.ndarray:
    return reference.predict(reference_eval_model(), grading_data().eval)


@check("predict/returns_int_array", points=0.5)
def test_predict_returns_int_array(artifact: Artifact) -> None:
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


@check("predict/matches_reference", points=1.5)
def test_predict_matches_reference(artifact: Artifact) -> None:
    predicted = returned_array(artifact, "`predict`")
    expected = _reference_predictions()
    require(
        predicted.shape == expected.shape,
        "Une prédiction par image du dataset passé en argument est attendue.",
    )
    agreement = float(np.mean(predicted == expected))
    require(
        agreement == 1.0,
        f"Les prédictions ne correspondent à celles de la référence que pour {agreement:.0%} des images "
        "(même modèle, mêmes images) : prédisez sur le `dataset` passé en argument, dans l'ordre, avec "
        "`model.eval()`.",
    )


def _accuracy_value(artifact: Artifact) -> float:
    value = artifact["value"]
    require(
        value is not None,
        f"`accuracy` doit renvoyer un nombre ; reçu : {artifact['returned']['type']}.",
    )
    return float(value)


@check("accuracy/range", points=0.5)
def test_accuracy_range(artifact: Artifact) -> None:
    value = _accuracy_value(artifact)
    if 1.0 < value <= 100.0:
        fail(
            f"`accuracy` a renvoyé {value:g} : l'exactitude est une proportion entre 0 et 1, pas un pourcentage."
        )
    require(0.0 <= value <= 1.0, f"`accuracy` a renvoyé {value!r}, hors de [0, 1].")


@check("accuracy/matches_reference", points=1.5)
def test_accuracy_matches_reference(artifact: Artifact) -> None:
    value = _accuracy_value(artifact)
    data = grading_data()
    values = [value, *(artifact["subset_values"] or [])]
    datasets = [data.eval, *data.eval_subsets]
    require(
        len(values) == len(datasets) and all(v is not None for v in values),
        "`accuracy` doit renvoyer un nombre pour chaque dataset qu'on lui passe.",
    )
    expected = [reference.accuracy(reference_eval_model(), d) for d in datasets]
    # The right computation in percent passes here: accuracy/range already costs the unit.
    scale = 100.0 if value > 1.0 and np.allclose(values, np.multiply(expected, 100), atol=1e-7) else 1.0
    for got, want, rows in zip(values, expected, datasets):
        require(
            np.isclose(got / scale, want, atol=1e-9),
            f"Sur {rows.num_rows} images, `accuracy` a renvoyé {got:.4f} alors que la référence trouve {want:.4f} "
            "avec le même modèle : calculez-la sur le `dataset` passé en argument (pas sur une variable globale).",
        )


def _expected_confusion() -> np.ndarray:
    return reference.confusion_matrix(reference_eval_model(), grading_data().eval)


@check("confusion_matrix/shape", points=0.5)
def test_confusion_shape(artifact: Artifact) -> None:
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


@check("confusion_matrix/counts", points=0.5)
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
        np.isclose(confusion.sum(), n),
        f"La matrice de confusion compte {confusion.sum():g} images au lieu de {n} : chaque image du "
        "dataset passé en argument compte exactement une fois.",
    )


@check("confusion_matrix/orientation", points=1)
def test_confusion_orientation(artifact: Artifact) -> None:
    confusion = returned_array(artifact, "`confusion_matrix`")
    expected = _expected_confusion()
    require(confusion.shape == expected.shape, "Forme incorrecte (voir la vérification de forme).")
    if _row_normalised(confusion):
        # Proportions are judged by confusion_matrix/counts; here only rows and columns matter.
        totals = expected.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(totals > 0, expected / totals, np.nan)
        confusion = np.where(np.isfinite(confusion) & (totals > 0), confusion, np.nan)
        if np.allclose(confusion, expected, equal_nan=True):
            return
    if not np.array_equal(confusion, expected) and np.array_equal(confusion, expected.T):
        fail(
            "La matrice de confusion est transposée : la ligne i doit être la classe vraie i et la colonne j "
            "la classe prédite j (`confusion[vrai, prédit] += 1`)."
        )
    require(
        np.array_equal(confusion, expected, equal_nan=True),
        "La matrice de confusion diffère de celle de la référence (même modèle, mêmes images) : lignes = "
        "classe vraie, colonnes = classe prédite, une case par couple.",
    )


@check("per_class_accuracy/matches_reference", points=1)
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
