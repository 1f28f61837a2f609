"""Do the grader's stand-ins keep every condition the grader's rows were chosen for?

A function built on ``predict`` is judged with the stand-in ``predict`` when the student's own
fails its checks (``grader_tests/td_cnn/inputs.py``'s ``grader_predictions`` lists the conditions). For each
condition, a function that depends on it must be wrong with the stand-in exactly as it is with a
correct ``predict`` (the reference's), and its correct counterpart right with both.
"""

from __future__ import annotations

import textwrap
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch

import reference
from grader_tests.td_cnn.inputs import GradingData, GradingInputs, eval_model, grader_predictions
from grader_tests.td_cnn.probe import STAND_INS
from tdkit.untrusted.probe import stand_ins


@cache
def _data() -> GradingData:
    return GradingData(GradingInputs())


def _confusion(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion


def _right(name: str, value: Any, labels: np.ndarray, predictions: np.ndarray) -> bool:
    if name == "accuracy":
        return bool(np.isclose(value, np.mean(predictions == labels)))
    value = np.asarray(value)
    return value.shape == (10, 10) and bool(np.array_equal(value, _confusion(labels, predictions)))


def _verdicts(source: str, name: str) -> dict[str, bool]:
    """Whether ``name`` defined by ``source`` is right on every grader dataset, run with the
    reference's ``predict`` (as written) and with the grader's stand-ins (alone)."""
    namespace: dict[str, Any] = {"np": np, "torch": torch, "predict": reference.predict}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - the test's own student functions
    model = eval_model(reference.ConvNet, _data().inputs)
    verdicts = {}
    for run in ("written", "alone"):
        right = True
        for dataset in (_data().eval, *_data().eval_subsets):
            labels = np.asarray(dataset["label"], dtype=np.int64)
            if run == "alone":
                with stand_ins(namespace, name, STAND_INS):
                    value = _attempt(namespace[name], model, dataset)
                predictions = grader_predictions(dataset)
            else:
                value = _attempt(namespace[name], model, dataset)
                predictions = reference.predict(model, dataset)
            right = right and value is not None and _right(name, value, labels, predictions)
        verdicts[run] = right
    return verdicts


def _attempt(function: Any, model: Any, dataset: Any) -> Any:
    try:
        return function(model, dataset)
    except Exception:  # noqa: BLE001 - a function that raises is wrong, with either predict
        return None


ABSENT_CLASS = {
    "classes seen (np.unique)": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            predictions = predict(model, dataset)
            classes = np.unique(np.concatenate([labels, predictions]))
            index = {c: i for i, c in enumerate(classes)}
            confusion = np.zeros((len(classes), len(classes)), dtype=int)
            for t, p in zip(labels, predictions):
                confusion[index[t], index[p]] += 1
            return confusion
    """,
    "largest label": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            predictions = predict(model, dataset)
            n = int(max(labels.max(), predictions.max())) + 1
            confusion = np.zeros((n, n), dtype=int)
            np.add.at(confusion, (labels, predictions), 1)
            return confusion
    """,
    "bincount without minlength": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            return np.bincount(10 * labels + predict(model, dataset)).reshape(10, 10)
    """,
}
BATCHES = {
    "last partial batch dropped": """
        def accuracy(model, dataset):
            correct = total = 0
            for start in range(0, len(dataset) - 31, 32):
                batch = dataset.select(range(start, start + 32))
                correct += int(np.sum(predict(model, batch) == np.asarray(batch["label"])))
                total += 32
            return correct / total
    """,
}
ORDER = {
    "sorted labels only": """
        def accuracy(model, dataset):
            labels = np.sort(np.asarray(dataset["label"]))
            return float(np.mean(predict(model, dataset) == labels))
    """,
    "shuffled predictions": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            predictions = np.random.default_rng(0).permutation(predict(model, dataset))
            confusion = np.zeros((10, 10), dtype=int)
            np.add.at(confusion, (labels, predictions), 1)
            return confusion
    """,
}
CORRECT = {
    "bincount with minlength": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            pairs = 10 * labels + predict(model, dataset)
            return np.bincount(pairs, minlength=100).reshape(10, 10)
    """,
    "every batch, the last one partial": """
        def accuracy(model, dataset):
            correct = 0
            for start in range(0, len(dataset), 32):
                batch = dataset.select(range(start, min(start + 32, len(dataset))))
                correct += int(np.sum(predict(model, batch) == np.asarray(batch["label"])))
            return correct / len(dataset)
    """,
    "both sides sorted alike": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            predictions = predict(model, dataset)
            order = np.argsort(labels, kind="stable")
            confusion = np.zeros((10, 10), dtype=int)
            np.add.at(confusion, (labels[order], predictions[order]), 1)
            return confusion
    """,
    "the predictions' dtype": """
        def confusion_matrix(model, dataset):
            labels = np.asarray(dataset["label"])
            predictions = predict(model, dataset)
            confusion = np.zeros((10, 10), dtype=predictions.dtype)
            np.add.at(confusion, (labels, predictions), 1)
            return confusion
    """,
}


def _name(source: str) -> str:
    return source.split("def ", 1)[1].split("(", 1)[0]


@pytest.mark.parametrize("source", ABSENT_CLASS.values(), ids=ABSENT_CLASS)
def test_a_class_absent_from_the_labels_is_absent_from_the_stand_in(source: str) -> None:
    """Is a matrix sized from the classes it sees as short with the stand-in as with a correct predict?"""
    assert _verdicts(source, _name(source)) == {"written": False, "alone": False}


@pytest.mark.parametrize("source", BATCHES.values(), ids=BATCHES)
def test_sizes_that_are_not_a_multiple_of_a_batch(source: str) -> None:
    """Does a function that drops a partial batch lose rows with the stand-in as it does as written?"""
    assert _verdicts(source, _name(source)) == {"written": False, "alone": False}


@pytest.mark.parametrize("source", ORDER.values(), ids=ORDER)
def test_the_datasets_order(source: str) -> None:
    """Does a function that pairs predictions and labels out of order fail with the stand-in too?"""
    assert _verdicts(source, _name(source)) == {"written": False, "alone": False}


@pytest.mark.parametrize("source", CORRECT.values(), ids=CORRECT)
def test_correct_functions_that_depend_on_their_input_are_right_both_ways(source: str) -> None:
    """Is each correct counterpart right with the stand-in and with a correct predict alike?"""
    assert _verdicts(source, _name(source)) == {"written": True, "alone": True}


def test_the_stand_in_predicts_as_a_correct_predict_does() -> None:
    """Same dtype, one prediction per row in order, and only classes present in the labels."""
    model = eval_model(reference.ConvNet, _data().inputs)
    for dataset in (_data().eval, *_data().eval_subsets):
        labels = np.asarray(dataset["label"])
        given = grader_predictions(dataset)
        correct = reference.predict(model, dataset)
        assert given.dtype == correct.dtype
        assert given.shape == correct.shape == labels.shape
        assert set(given) <= set(labels)
        assert 0.5 < np.mean(given == labels) < 0.8  # wrong on about a third: orientation shows
