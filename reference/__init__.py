"""Reference implementation of the TD "CNN pour la classification d'images".

Plain PyTorch/numpy/matplotlib: it imports nothing from ``tdkit`` so that the hidden
checks (``grader_tests/``) can use it as the oracle for every student function.
"""

from reference.minibatch import MiniBatchRecipe, train_minibatch
from reference.strongnet import StrongNet, StrongRecipe, predict_strongnet, train_strongnet
from reference.td_cnn import (
    ConvNet,
    accuracy,
    activation_maps,
    confusion_matrix,
    per_class_accuracy,
    plot_learning_curve,
    predict,
    to_chw,
    train,
)

__all__ = [
    "ConvNet",
    "MiniBatchRecipe",
    "StrongNet",
    "StrongRecipe",
    "accuracy",
    "activation_maps",
    "confusion_matrix",
    "per_class_accuracy",
    "plot_learning_curve",
    "predict",
    "predict_strongnet",
    "to_chw",
    "train",
    "train_minibatch",
    "train_strongnet",
]
