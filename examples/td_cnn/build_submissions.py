"""Build the sample submissions and the trap variants from the current release notebook.

Usage, from the repository root::

    .venv/bin/python examples/td_cnn/build_submissions.py

Each notebook is the current ``release/td_cnn/td_cnn.ipynb`` with the source of some cells
replaced, found by their nbgrader ``grade_id``: the solution cells (``train``,
``plot_learning_curve``, ``predict``, ``accuracy``, ``confusion_matrix`` (which also defines
``per_class_accuracy``), ``minibatch``, ``activation_maps``) and the free-text answer cells
(``answer_examples``, ``answer_accuracy``, ``answer_bricolage``). The full solution is parsed
from the solution regions of ``source/td_cnn/td_cnn.md``, never copied by hand; each mistake
is written out as the student's code.

Writes, with no outputs and the same bytes on every run:

- ``examples/td_cnn/submissions/<student>.ipynb`` and ``examples/td_cnn/submissions/expected.json``: the
  demo set (a full solution, the release as is, the TD's loop kept, typical mistakes, a
  notebook that crashes half-way);
- ``tests/files/variants/<variant>.ipynb`` and ``tests/files/variants/expected.json``: one
  notebook per trap of the hidden checks and per correct variant that must get full marks.
  To keep these fixtures small their prose is dropped (Markdown cells without a grade_id);
  every code cell and every nbgrader cell stays, so each still runs and grades as a submission.

``expected.json`` maps each notebook's name to its description and ``failed``: every check id
expected to fail, with a French keyword its message must contain (case-insensitive). Every
other check must pass. ``cell_errors`` lists the exceptions its cells raise (none if absent);
``known_gap``, where present, says why the hidden checks cannot catch that trap yet (its test
is an expected failure until they do). ``notes`` maps a check that must pass to a keyword of
the note its message must carry (a function judged right on its own, made wrong by another).

Run it again after changing the source notebook (after ``tdkit release``):
``tests/test_traps.py`` fails while the committed files are stale.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

ROOT = Path(__file__).resolve().parents[2]
SOURCE_MD = ROOT / "source" / "td_cnn" / "td_cnn.md"
RELEASE = ROOT / "release" / "td_cnn" / "td_cnn.ipynb"
EXAMPLES_DIR = Path("examples") / "td_cnn" / "submissions"
VARIANTS_DIR = Path("tests") / "files" / "variants"

CODE_IDS = (
    "train",
    "plot_learning_curve",
    "predict",
    "accuracy",
    "confusion_matrix",
    "minibatch",
    "activation_maps",
)
ANSWER_IDS = ("answer_examples", "answer_accuracy", "answer_bricolage")
STUB_BEGIN, STUB_END = "### BEGIN RELEASE STUB", "### END RELEASE STUB"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"


# --------------------------------------------------------------------------------------------
# The solution, parsed from the source notebook


def solution_text(source: str) -> str:
    """A solution cell as the instructor wrote it: release stub dropped, solution markers removed."""
    kept: list[str] = []
    in_stub = False
    for line in source.split("\n"):
        marker = line.strip()
        if marker == STUB_BEGIN:
            in_stub = True
        elif marker == STUB_END:
            in_stub = False
        elif not in_stub and marker not in (SOLUTION_BEGIN, SOLUTION_END):
            kept.append(line)
    if in_stub:
        raise SystemExit(f"{SOURCE_MD}: a release stub region is not closed:\n{source}")
    return "\n".join(kept).strip("\n")


def parse_solution(md_path: Path = SOURCE_MD) -> dict[str, str]:
    """grade_id -> solution source of every solution cell of the source notebook."""
    sys.path.insert(0, str(ROOT / "src"))
    from tdkit.release.notebooks import read_source

    solutions = {}
    for cell in read_source(md_path).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            solutions[meta["grade_id"]] = solution_text(cell.source)
    missing = set(CODE_IDS + ANSWER_IDS) - set(solutions)
    if missing:
        raise SystemExit(f"{md_path} has no solution cell {sorted(missing)}: update {__file__}.")
    return solutions


# --------------------------------------------------------------------------------------------
# Students' code


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


TRAIN_DOC = '"""Entraîne `model` échantillon par échantillon ; renvoie la perte moyenne de chaque époque."""'
CORRECT_STEP = """\
optimizer.zero_grad()
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()
optimizer.step()"""


def train_loop(
    body: str = CORRECT_STEP,
    *,
    signature: str = "model, optimizer, dataset, n_epochs",
    data: str = "dataset",
    epochs: str = "n_epochs",
    append: str = "epoch_loss / epoch_length",
) -> str:
    """A student's ``train``: the TD's per-sample loop with ``body`` run on each row."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 12)
    return (
        f"def train({signature}):\n"
        f"    {TRAIN_DOC}\n"
        "    loss_history = []\n"
        f"    epoch_length = {data}.num_rows\n"
        f"    for epoch in range({epochs}):\n"
        "        epoch_loss = 0.0\n"
        f'        for row in {data}.with_format("torch"):\n'
        f"{inner}\n"
        "            epoch_loss += loss.item()\n"
        f"        loss_history.append({append})\n"
        '        print(f"époque {epoch + 1} : perte moyenne {loss_history[-1]:.4f}")\n'
        "    return loss_history"
    )


def swap(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once; stops the build if the solution no longer has it."""
    if text.count(old) != 1:
        raise SystemExit(
            f"expected exactly one {old!r} in the solution:\n{text}\nUpdate {__file__}."
        )
    return text.replace(old, new)


NO_STEP = """\
optimizer.zero_grad()
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()"""

# The natural mis-fix of the TD: step() added at the end, after the TD's zero_grad().
ZERO_GRAD_BETWEEN = """\
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output.view(-1), row["label"])
loss.backward()
optimizer.zero_grad()
optimizer.step()"""

NO_ZERO_GRAD = """\
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()
optimizer.step()"""

STEP_BEFORE_BACKWARD = """\
optimizer.zero_grad()
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
optimizer.step()
loss.backward()"""

TWO_STEPS = """\
optimizer.zero_grad()
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()
optimizer.step()
optimizer.step()  # un deuxième pas pour apprendre plus vite"""

# `optim` is the notebook's global optimizer (the training cell creates it).
GLOBAL_OPTIMIZER = """\
optim.zero_grad()
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()
optim.step()"""

ZERO_GRAD_AFTER_STEP = """\
output = model(row["zdata"].to(torch.float32).unsqueeze(0))
loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))
loss.backward()
optimizer.step()
optimizer.zero_grad()"""

SET_TO_NONE_TRUE = swap(
    CORRECT_STEP, "optimizer.zero_grad()", "optimizer.zero_grad(set_to_none=True)"
)
SET_TO_NONE_FALSE = swap(
    CORRECT_STEP, "optimizer.zero_grad()", "optimizer.zero_grad(set_to_none=False)"
)
MODEL_ZERO_GRAD = swap(CORRECT_STEP, "optimizer.zero_grad()", "model.zero_grad()")
LOSS_VIEW = swap(
    CORRECT_STEP,
    'cross_entropy(output, row["label"].reshape(1))',
    'cross_entropy(output.view(-1), row["label"])',
)
LOSS_UNSQUEEZE = swap(
    CORRECT_STEP,
    'cross_entropy(output, row["label"].reshape(1))',
    'cross_entropy(output, row["label"].unsqueeze(0))',
)
LOG_SOFTMAX_NLL = swap(
    CORRECT_STEP,
    'loss = torch.nn.functional.cross_entropy(output, row["label"].reshape(1))',
    'loss = torch.nn.functional.nll_loss(torch.log_softmax(output, dim=1), row["label"].reshape(1))',
)

# Rows read by index, as plain lists: the same floats, converted by hand.
TRAIN_INDEXED_ROWS = code('''
    def train(model, optimizer, dataset, n_epochs):
        """Entraîne `model` échantillon par échantillon ; renvoie la perte moyenne de chaque époque."""
        history = []
        for _ in range(n_epochs):
            total = 0.0
            for i in range(len(dataset)):
                row = dataset[i]
                x = torch.tensor(row["zdata"], dtype=torch.float32)[None]
                y = torch.tensor([row["label"]])
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                total += loss.item()
            history.append(total / len(dataset))
        return history
''')

# Code that writes warnings and other noise to stderr: it must not cost a point.
TRAIN_WARNINGS = code('''
    import sys
    import warnings


    def train(model, optimizer, dataset, n_epochs):
        """Entraîne `model` échantillon par échantillon ; renvoie la perte moyenne de chaque époque."""
        warnings.warn("boucle échantillon par échantillon : c'est lent", UserWarning)
        print("début de l'entraînement", file=sys.stderr)
        loss_history = []
        for epoch in range(n_epochs):
            epoch_loss = 0.0
            for row in dataset.with_format("torch"):
                optimizer.zero_grad()
                # torch.tensor(tensor) émet un UserWarning (copie d'un tenseur)
                x = torch.tensor(row["zdata"], dtype=torch.float32).unsqueeze(0)
                loss = torch.nn.functional.cross_entropy(model(x), torch.tensor(row["label"]).reshape(1))
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item()
            loss_history.append(epoch_loss / len(dataset))
            warnings.warn(f"époque {epoch + 1} terminée", RuntimeWarning)
        return loss_history
''')

PREDICT_WARNINGS = code('''
    def predict(model, dataset):
        """Classe prédite (entier de 0 à 9) de chaque image de `dataset`, dans l'ordre."""
        warnings.warn("predict : évaluation en un seul lot", DeprecationWarning)
        print("prédiction…", file=sys.stderr)
        inputs = torch.tensor(torch.as_tensor(dataset.with_format("numpy")[:]["zdata"]))
        model.eval()
        with torch.no_grad():
            predictions = model(inputs.float()).argmax(dim=1)
        model.train()
        return predictions.numpy()
''')

# The argument renamed, the body still plots the notebook's global `loss_history`.
CURVE_GLOBAL_HISTORY = code('''
    def plot_learning_curve(losses):
        """Figure matplotlib : perte moyenne en fonction de l'époque."""
        fig, ax = plt.subplots()
        ax.plot(range(1, len(loss_history) + 1), loss_history, marker="o")
        ax.set_xlabel("Époque")
        ax.set_ylabel("Perte moyenne")
        return fig
''')

CURVE_X_FROM_ZERO = code('''
    def plot_learning_curve(loss_history):
        """Figure matplotlib : perte moyenne en fonction de l'époque."""
        fig, ax = plt.subplots()
        ax.plot(loss_history)
        ax.set_xlabel("Époque")
        ax.set_ylabel("Perte moyenne")
        return fig
''')

ACCURACY_GLOBAL_DATA = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        labels = np.asarray(test_dataset["label"])
        return float(np.mean(predict(model, test_dataset) == labels))
''')

CONFUSION_LOOP = '''
    def confusion_matrix(model, dataset):
        """Matrice (10, 10) d'entiers : lignes = classe vraie, colonnes = classe prédite."""
        confusion = np.zeros((10, 10), dtype=int)
        for true, guess in zip(dataset["label"], predict(model, dataset)):
            confusion[{index}] += 1
        return confusion{transform}
'''
PER_CLASS_ROWS = '''

    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        return np.diag(confusion) / confusion.sum(axis=1)
'''


def confusion_cell(
    index: str = "true, guess", transform: str = "", per_class: str = PER_CLASS_ROWS
) -> str:
    return code(CONFUSION_LOOP.format(index=index, transform=transform) + per_class)


CONFUSION_UNIQUE = code('''
    def confusion_matrix(model, dataset):
        """Matrice (10, 10) d'entiers : lignes = classe vraie, colonnes = classe prédite."""
        labels = np.asarray(dataset["label"])
        predictions = predict(model, dataset)
        classes = np.unique(labels)
        return np.array([[np.sum((labels == t) & (predictions == p)) for p in classes] for t in classes])


    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        return np.diag(confusion) / confusion.sum(axis=1)
''')

PER_CLASS_COLUMNS = '''

    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        return np.diag(confusion) / confusion.sum(axis=0)
'''

PER_CLASS_ZERO_FOR_ABSENT = '''

    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        totals = confusion.sum(axis=1)
        return np.diag(confusion) / np.maximum(totals, 1)
'''

# Positive part summed over channels, but never divided by each map's maximum.
ACTIVATION_NOT_NORMALISED = code('''
    def activation_maps(model, images):
        """Cartes d'activation de `model.conv1` : tenseur (N, H', W') à valeurs dans [0, 1]."""
        captured = []
        handle = model.conv1.register_forward_hook(lambda module, inputs, output: captured.append(output))
        with torch.no_grad():
            model(images.float())
        handle.remove()
        return torch.relu(captured[0]).sum(dim=1)
''')

# Judged on their own: `accuracy` and `confusion_matrix` written on top of `predict`.
ACCURACY_VIA_CONFUSION = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        confusion = confusion_matrix(model, dataset)
        return float(np.trace(confusion) / confusion.sum())
''')

ACCURACY_OWN_ARGMAX = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        inputs = torch.as_tensor(dataset.with_format("numpy")[:]["zdata"], dtype=torch.float32)
        with torch.no_grad():
            guesses = model(inputs).argmax(dim=1).numpy()
        return float(np.mean(guesses == np.asarray(dataset["label"])))
''')

# Written for a `predict` that returns a tensor: right with the student's own predict only.
ACCURACY_FOR_TENSOR_PREDICT = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        predictions = predict(model, dataset)
        return (predictions == torch.as_tensor(np.asarray(dataset["label"]))).float().mean().item()
''')

# The model left in eval mode, and the caller's dataset switched to torch in place.
PREDICT_SET_FORMAT = code('''
    def predict(model, dataset):
        """Classe prédite (entier de 0 à 9) de chaque image de `dataset`, dans l'ordre."""
        dataset.set_format("torch", columns=["zdata"])
        inputs = dataset[:]["zdata"].to(torch.float32)
        with torch.no_grad():
            return model(inputs).argmax(dim=1).numpy()
''')

PREDICT_WAS_TRAINING = code('''
    def predict(model, dataset):
        """Classe prédite (entier de 0 à 9) de chaque image de `dataset`, dans l'ordre."""
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                outputs = model(torch.tensor(dataset.with_format("numpy")[:]["zdata"]))
        finally:
            model.train(was_training)
        return outputs.argmax(dim=1).numpy().astype(np.int32)
''')

# Recall computed right, but the caller's matrix loses its diagonal on the way.
PER_CLASS_IN_PLACE = '''

    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        correct = np.diag(confusion).copy()
        np.fill_diagonal(confusion, 0)
        return correct / (confusion.sum(axis=1) + correct)
'''

PER_CLASS_LIST = '''

    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        return [confusion[i, i] / confusion[i].sum() if confusion[i].sum() else float("nan") for i in range(10)]
'''

# The forward hook is never removed: every later call of the model runs it again.
ACTIVATION_HOOK_LEFT = code('''
    def activation_maps(model, images):
        """Cartes d'activation de `model.conv1` : tenseur (N, H', W') à valeurs dans [0, 1]."""
        captured = []
        model.conv1.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
        with torch.no_grad():
            model(images.to(torch.float32))
        maps = captured[-1].clamp(min=0).sum(dim=1)
        return maps / maps.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
''')

ACTIVATION_EVAL_RESTORED = code('''
    def activation_maps(model, images):
        """Cartes d'activation de `model.conv1` : tenseur (N, H', W') à valeurs dans [0, 1]."""
        captured = {}

        def keep(module, inputs, output):
            captured["conv1"] = output

        handle = model.conv1.register_forward_hook(keep)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(images.float())
        handle.remove()
        model.train(was_training)
        maps = torch.relu(captured["conv1"]).sum(dim=1)
        return maps / maps.amax(dim=(1, 2), keepdim=True)
''')


def confusion_requires_grad() -> str:
    """The loop version, with requires_grad turned off on the model instead of torch.no_grad()."""
    return swap(
        confusion_cell(),
        "    confusion = np.zeros",
        "    for parameter in model.parameters():\n        parameter.requires_grad_(False)\n    confusion = np.zeros",
    )


def confusion_tensor() -> str:
    """The loop version, counted in a torch tensor (per-class accuracy converts it)."""
    cell = swap(
        confusion_cell(),
        "np.zeros((10, 10), dtype=int)",
        "torch.zeros((10, 10), dtype=torch.int64)",
    )
    return swap(
        cell,
        "    return np.diag(confusion)",
        "    confusion = np.asarray(confusion, dtype=float)\n    return np.diag(confusion)",
    )


def train_set_format() -> str:
    """The TD's loop, iterating the caller's dataset switched to torch in place."""
    loop = swap(train_loop(), 'dataset.with_format("torch")', "dataset")
    return swap(
        loop, "    loss_history = []", '    dataset.set_format("torch")\n    loss_history = []'
    )


# Correct styles at the edge of the new checks: no model.eval() (no_grad only), NumPy scalars
# and counts from np.bincount, epoch means from np.mean.
PREDICT_NO_EVAL = code('''
    def predict(model, dataset):
        """Classe prédite (entier de 0 à 9) de chaque image de `dataset`, dans l'ordre."""
        inputs = torch.from_numpy(np.asarray(dataset.with_format("numpy")[:]["zdata"], dtype=np.float32))
        with torch.no_grad():
            logits = model(inputs).numpy()
        return np.argmax(logits, axis=1)
''')

ACCURACY_NUMPY_SCALAR = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        return np.mean(predict(model, dataset) == np.asarray(dataset["label"]))
''')

CONFUSION_BINCOUNT = code('''
    def confusion_matrix(model, dataset):
        """Matrice (10, 10) d'entiers : lignes = classe vraie, colonnes = classe prédite."""
        pairs = 10 * np.asarray(dataset["label"]) + predict(model, dataset)
        return np.bincount(pairs, minlength=100).reshape(10, 10)


    def per_class_accuracy(confusion):
        """Exactitude de chaque classe vraie (array de 10 floats)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return confusion.diagonal() / confusion.sum(axis=1)
''')


# Functions that depend on a property of what they are given (issue: a stand-in must never hide a
# bug): the classes present, their largest label, their order, the dtype of the predictions.
PER_CLASS_RECALL = """

    def per_class_accuracy(confusion):
        \"\"\"Exactitude de chaque classe vraie (array de 10 floats).\"\"\"
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(confusion) / confusion.sum(axis=1)
"""


def confusion_from(body: str) -> str:
    """A confusion_matrix cell whose body is ``body`` (over ``labels`` and ``predictions``)."""
    head = '''
    def confusion_matrix(model, dataset):
        """Matrice (10, 10) d'entiers : lignes = classe vraie, colonnes = classe prédite."""
        labels = np.asarray(dataset["label"])
        predictions = predict(model, dataset)
'''
    return code(head + body + PER_CLASS_RECALL)


CONFUSION_CLASSES_SEEN = confusion_from("""
        classes = np.unique(np.concatenate([labels, predictions]))
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        for true, guess in zip(np.searchsorted(classes, labels), np.searchsorted(classes, predictions)):
            confusion[true, guess] += 1
        return confusion
""")
CONFUSION_BINCOUNT_NO_MINLENGTH = confusion_from("""
        return np.bincount(10 * labels + predictions).reshape(10, 10)
""")
CONFUSION_LARGEST_LABEL = confusion_from("""
        n_classes = int(max(labels.max(), predictions.max())) + 1
        confusion = np.zeros((n_classes, n_classes), dtype=int)
        np.add.at(confusion, (labels, predictions), 1)
        return confusion
""")
CONFUSION_PREDICTIONS_DTYPE = confusion_from("""
        confusion = np.zeros((10, 10), dtype=predictions.dtype)
        np.add.at(confusion, (labels, predictions.astype(int)), 1)
        return confusion
""")
CONFUSION_SORTED_BOTH = confusion_from("""
        order = np.argsort(labels, kind="stable")
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (labels[order], predictions[order]), 1)
        return confusion
""")
ACCURACY_SORTED_LABELS = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        labels = np.sort(np.asarray(dataset["label"]))
        return float(np.mean(predict(model, dataset) == labels))
''')
ACCURACY_BATCHES_DROP_LAST = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        correct = total = 0
        for start in range(0, len(dataset) - 31, 32):
            batch = dataset.select(range(start, start + 32))
            correct += int(np.sum(predict(model, batch) == np.asarray(batch["label"])))
            total += 32
        return correct / total
''')
ACCURACY_BATCHES = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        correct = 0
        for start in range(0, len(dataset), 32):
            batch = dataset.select(range(start, min(start + 32, len(dataset))))
            correct += int(np.sum(predict(model, batch) == np.asarray(batch["label"])))
        return correct / len(dataset)
''')
# Leaves the model in eval mode itself, but then calls the student's predict, which ends with
# model.train(): as written the model comes back in training mode.
ACCURACY_EVAL_THEN_PREDICT = code('''
    def accuracy(model, dataset):
        """Proportion d'images de `dataset` bien classées, entre 0 et 1."""
        model.eval()
        labels = np.asarray(dataset["label"])
        return float(np.mean(predict(model, dataset) == labels))
''')
ACCURACY_OWN_FORWARD_IN_EVAL = swap(
    ACCURACY_OWN_ARGMAX,
    "    with torch.no_grad():",
    "    model.eval()\n    with torch.no_grad():",
)

ANSWERS = {
    "answer_examples": "Sur 8 images le modèle en reconnaît 3 : mieux que le hasard, mais on ne peut "
    "rien conclure sur si peu d'exemples.",
    "answer_accuracy": "Environ 40 % sur le test, 45 % sur le train : bien mieux que 10 % (le hasard), "
    "mais loin des 99 % de l'état de l'art.",
    "answer_bricolage": "Avec Adam (lr=1e-3) et des mini-batchs de 64 on passe à 60 % ; sans "
    "normalisation la perte descend beaucoup plus lentement.",
}


# --------------------------------------------------------------------------------------------
# What each notebook is and how it must be graded


@dataclass(frozen=True)
class Submission:
    name: str
    description: str
    cells: Mapping[str, str]  # grade_id -> new source; cells not named keep the release's
    failed: Mapping[str, str] = field(default_factory=dict)  # check id -> keyword of its message
    # Exceptions its solution cells raise when run top to bottom (the kernel goes on after them).
    cell_errors: tuple[str, ...] = ()
    # Why the hidden checks cannot catch this trap yet (the test is then an expected failure).
    known_gap: str = ""
    # check id -> keyword of the note a passed check adds (e.g. "your own predict is wrong").
    notes: Mapping[str, str] = field(default_factory=dict)


TD_LOOP_FAILS = {
    "train/step_called": "step()",
    "train/matches_reference": "poids",
    "train/loss_history": "somme",
}
NOT_WRITTEN = "NotImplementedError"


def not_written(*groups_checks: str) -> dict[str, str]:
    return not_written_as(NOT_WRITTEN, *groups_checks)


def not_written_as(keyword: str, *groups_checks: str) -> dict[str, str]:
    """Every check of a function that raised on the grader's rows, each saying ``keyword``."""
    return {check: keyword for check in groups_checks}


def examples(solution: Mapping[str, str], release: Mapping[str, str]) -> list[Submission]:
    full = {**solution}
    student = {**{k: solution[k] for k in CODE_IDS}, **ANSWERS}
    accuracy_crash = (
        '# Exactitude sur le test, pour voir\nlabels_test = np.asarray(test_datset["label"])\n\n\n'
    )
    return [
        Submission(
            "alice_solution",
            "The instructor's solution (parsed from the source notebook) with its answers: full marks.",
            full,
        ),
        Submission(
            "bob_td_loop_kept",
            "Every function written correctly and the questions answered, but the TD's loop kept as "
            "released: no step(), zero_grad() right after backward(), returns the sum of the losses.",
            {**student, "train": release["train"]},
            TD_LOOP_FAILS,
        ),
        Submission(
            "chloe_unanswered",
            "The release as is: the TD's loop, every other function still raising "
            "NotImplementedError, no answer. tdkit grade gives it 0 with one message, « Rien n'a été "
            "modifié » (tdkit.intake.identify); function by function, everything the grader calls still "
            "gets a message.",
            {},
            {
                **TD_LOOP_FAILS,
                **not_written(
                    "learning_curve/returns_figure",
                    "learning_curve/line_data",
                    "learning_curve/labels",
                    "predict/returns_int_array",
                    "predict/matches_reference",
                    "predict/leaves_arguments",
                    "accuracy/range",
                    "accuracy/matches_reference",
                    "accuracy/leaves_arguments",
                    "confusion_matrix/shape",
                    "confusion_matrix/counts",
                    "confusion_matrix/orientation",
                    "confusion_matrix/leaves_arguments",
                    "per_class_accuracy/matches_reference",
                    "activation_maps/shape_range",
                    "activation_maps/matches_reference",
                    "activation_maps/hook_removed",
                ),
            },
        ),
        Submission(
            "david_zero_grad_between",
            "Added step() at the end of the TD's loop, after its zero_grad(): every step uses a zero "
            "gradient, the weights never move.",
            {**student, "train": train_loop(ZERO_GRAD_BETWEEN)},
            {
                "train/zero_grad_order": "entre",
                "train/matches_reference": "poids",
                "train/loss_history": "modèle de départ",
            },
        ),
        Submission(
            "emma_percent",
            "Accuracy returned in percent, everything else right.",
            {
                **student,
                "accuracy": swap(solution["accuracy"], "return float(", "return 100 * float("),
            },
            {"accuracy/range": "pourcentage"},
        ),
        Submission(
            "farid_transposed_precision",
            "Confusion matrix transposed (rows = predicted class) and per-class accuracy divided by "
            "column sums (the precision).",
            {
                **student,
                "confusion_matrix": confusion_cell("guess, true", per_class=PER_CLASS_COLUMNS),
            },
            {
                "confusion_matrix/orientation": "transposée",
                "per_class_accuracy/matches_reference": "précision",
            },
        ),
        Submission(
            "gaelle_sum_and_x0",
            "Loop fixed but still returns the sum of each epoch's losses; learning curve plotted "
            "from x = 0 (matplotlib's default abscissa).",
            {
                **student,
                "train": train_loop(append="epoch_loss"),
                "plot_learning_curve": CURVE_X_FROM_ZERO,
            },
            {"train/loss_history": "somme", "learning_curve/line_data": "abscisse"},
        ),
        Submission(
            "ines_crash_midway",
            "A typo (NameError) at the top of the accuracy cell stops that cell before `accuracy` is "
            "defined; the cells after it run, so every later function is still graded.",
            {**student, "accuracy": accuracy_crash + solution["accuracy"]},
            {
                "accuracy/range": "erreur",
                "accuracy/matches_reference": "erreur",
                "accuracy/leaves_arguments": "erreur",
            },
            cell_errors=("NameError",),
        ),
    ]


def variants(solution: Mapping[str, str]) -> list[Submission]:
    base = {k: solution[k] for k in CODE_IDS}

    def with_train(body: str = CORRECT_STEP, **options: str) -> dict[str, str]:
        return {**base, "train": train_loop(body, **options)}

    frozen = {"train/matches_reference": "poids", "train/loss_history": "modèle de départ"}
    # H and W swapped in predict: the TD's own trap, in the evaluation.
    transposed_predict = swap(
        solution["predict"],
        '["zdata"], dtype=torch.float32)',
        '["zdata"], dtype=torch.float32).transpose(2, 3)',
    )
    moving = {"train/matches_reference": "poids", "train/loss_history": "référence"}
    return [
        # Training traps
        Submission(
            "train_no_step",
            "zero_grad, forward, backward, and no optimizer.step().",
            with_train(NO_STEP),
            {"train/step_called": "step()", **frozen},
        ),
        Submission(
            "train_zero_grad_between",
            "zero_grad() between backward() and step(): every step has a zero gradient.",
            with_train(ZERO_GRAD_BETWEEN),
            {"train/zero_grad_order": "entre", **frozen},
        ),
        Submission(
            "train_no_zero_grad",
            "No zero_grad() at all: gradients accumulate over samples.",
            with_train(NO_ZERO_GRAD),
            {"train/gradients_reset": "zéro", **moving},
        ),
        Submission(
            "train_step_before_backward",
            "step() before backward(): each step uses no gradient.",
            with_train(STEP_BEFORE_BACKWARD),
            {"train/zero_grad_order": "avant", **frozen},
        ),
        Submission(
            "train_two_steps",
            "Two optimizer.step() per sample.",
            with_train(TWO_STEPS),
            {"train/one_step_per_sample": "un seul pas", **moving},
        ),
        Submission(
            "train_global_optimizer",
            "Uses the notebook's global `optim` instead of the `optimizer` argument.",
            with_train(GLOBAL_OPTIMIZER),
            {"train/step_called": "argument", **frozen},
        ),
        Submission(
            "train_global_model",
            "Parameters renamed, body uses the notebook's global `model` and `optim`.",
            with_train(GLOBAL_OPTIMIZER, signature="net, opt, dataset, n_epochs"),
            {
                "train/step_called": "variable globale",
                "train/uses_arguments": "aucune image",
                **moving,
            },
        ),
        Submission(
            "train_global_dataset",
            "Iterates the notebook's global `train_dataset` instead of the `dataset` argument.",
            with_train(data="train_dataset"),
            {"train/uses_arguments": "dataset", **moving},
        ),
        Submission(
            "train_hardcoded_epochs",
            "The TD's hard-coded 8 epochs instead of n_epochs.",
            with_train(epochs="8"),
            {
                "train/returns_history": "8 valeurs",
                "train/uses_arguments": "n_epochs",
                "train/matches_reference": "poids",
                "train/loss_history": "une perte par époque",
            },
        ),
        Submission(
            "train_global_n_epochs",
            "Loops over the notebook's N_EPOCHS parameter instead of the n_epochs argument.",
            with_train(epochs="N_EPOCHS"),
            {
                "train/returns_history": "1 valeurs",
                "train/uses_arguments": "n_epochs",
                "train/matches_reference": "poids",
                "train/loss_history": "une perte par époque",
            },
        ),
        Submission(
            "train_returns_sum",
            "Correct loop, returns the sum of each epoch's losses instead of their mean.",
            with_train(append="epoch_loss"),
            {"train/loss_history": "somme"},
        ),
        # Correct training loops: full marks
        Submission(
            "ok_zero_grad_first", "The TD's fix: zero_grad, forward, backward, step.", with_train()
        ),
        Submission(
            "ok_zero_grad_after_step",
            "forward, backward, step, zero_grad.",
            with_train(ZERO_GRAD_AFTER_STEP),
        ),
        Submission(
            "ok_set_to_none_true",
            "optimizer.zero_grad(set_to_none=True).",
            with_train(SET_TO_NONE_TRUE),
        ),
        Submission(
            "ok_set_to_none_false",
            "optimizer.zero_grad(set_to_none=False).",
            with_train(SET_TO_NONE_FALSE),
        ),
        Submission(
            "ok_model_zero_grad",
            "model.zero_grad() instead of optimizer.zero_grad().",
            with_train(MODEL_ZERO_GRAD),
        ),
        Submission(
            "ok_loss_view",
            "The TD's unbatched loss: cross_entropy(output.view(-1), label).",
            with_train(LOSS_VIEW),
        ),
        Submission(
            "ok_loss_unsqueeze",
            "Batched-of-one loss: cross_entropy(output, label.unsqueeze(0)).",
            with_train(LOSS_UNSQUEEZE),
        ),
        Submission("ok_log_softmax_nll", "log_softmax then nll_loss.", with_train(LOG_SOFTMAX_NLL)),
        Submission(
            "ok_indexed_rows",
            "Rows read as dataset[i] (plain lists) and converted by hand; len(dataset).",
            {**base, "train": TRAIN_INDEXED_ROWS},
        ),
        Submission(
            "ok_warnings",
            "Correct code that writes UserWarning, RuntimeWarning, DeprecationWarning and prints to stderr.",
            {**base, "train": TRAIN_WARNINGS, "predict": PREDICT_WARNINGS},
        ),
        Submission(
            "ok_confusion_loop",
            "Confusion matrix counted in a Python loop; per-class accuracy 0 for an absent class.",
            {**base, "confusion_matrix": confusion_cell(per_class=PER_CLASS_ZERO_FOR_ABSENT)},
        ),
        # One bug charged once: accuracy and confusion_matrix judged with the grader's predict
        Submission(
            "cascade_predict_transposed",
            "predict transposes H and W (the TD's own trap); accuracy and confusion_matrix are the "
            "solution's, written on top of predict: only predict loses points, the others say why "
            "their values are wrong with the student's predict.",
            {**base, "predict": transposed_predict},
            {"predict/matches_reference": "référence"},
            notes={
                "accuracy/matches_reference": "votre propre `predict`",
                "confusion_matrix/orientation": "votre propre `predict`",
            },
        ),
        Submission(
            "cascade_predict_global_data",
            "predict ignores its dataset argument (the notebook's global test_dataset); accuracy and "
            "confusion_matrix call it correctly: with the student's predict they even raise.",
            {
                **base,
                "predict": swap(
                    solution["predict"],
                    "torch.as_tensor(dataset.with_format",
                    "torch.as_tensor(test_dataset.with_format",
                ),
            },
            {"predict/matches_reference": "argument", "predict/returns_int_array": "forme (120,)"},
            notes={
                "accuracy/matches_reference": "erreur",
                "confusion_matrix/orientation": "votre propre `predict`",
            },
        ),
        Submission(
            "cascade_accuracy_via_confusion",
            "accuracy = trace of the student's confusion_matrix, itself built on a wrong predict: only "
            "predict loses points.",
            {
                **base,
                "predict": transposed_predict,
                "accuracy": ACCURACY_VIA_CONFUSION,
            },
            {"predict/matches_reference": "référence"},
            notes={"accuracy/matches_reference": "votre propre `predict`"},
        ),
        Submission(
            "cascade_accuracy_own_argmax",
            "A wrong predict beside an accuracy that does its own argmax (no predict call): accuracy is "
            "right on its own.",
            {
                **base,
                "predict": transposed_predict,
                "accuracy": ACCURACY_OWN_ARGMAX,
            },
            {"predict/matches_reference": "référence"},
        ),
        # A stand-in never hides a bug: functions that depend on a property of their input
        Submission(
            "confusion_classes_seen",
            "Confusion matrix sized from the classes seen in the labels and the predictions: 9x9 "
            "with the student's own (correct) predict, so judged as written, not with the stand-in.",
            {**base, "confusion_matrix": CONFUSION_CLASSES_SEEN},
            {"confusion_matrix/shape": "absente", "confusion_matrix/orientation": "forme"},
        ),
        Submission(
            "confusion_largest_label",
            "Confusion matrix sized from the largest label or prediction: 9x9 when the last class is "
            "absent.",
            {**base, "confusion_matrix": CONFUSION_LARGEST_LABEL},
            {"confusion_matrix/shape": "absente", "confusion_matrix/orientation": "forme"},
        ),
        Submission(
            "confusion_bincount_no_minlength",
            "np.bincount without minlength: 89 counts cannot be reshaped to (10, 10) when the last "
            "class is absent; the function raises on the grader's rows.",
            {**base, "confusion_matrix": CONFUSION_BINCOUNT_NO_MINLENGTH},
            not_written_as(
                "reshape",
                "confusion_matrix/shape",
                "confusion_matrix/counts",
                "confusion_matrix/orientation",
                "confusion_matrix/leaves_arguments",
            ),
        ),
        Submission(
            "ok_confusion_dtype_of_predictions",
            "Confusion matrix of the predictions' dtype, beside a predict that returns int32: "
            "integer counts, correct.",
            {
                **base,
                "predict": PREDICT_WAS_TRAINING,
                "confusion_matrix": CONFUSION_PREDICTIONS_DTYPE,
            },
        ),
        Submission(
            "cascade_predict_float_confusion_dtype",
            "predict returns float classes; confusion_matrix takes the predictions' dtype: float "
            "counts as written, integer with a correct predict. Only predict's dtype costs a point.",
            {
                **base,
                "predict": swap(
                    solution["predict"],
                    "torch.cat(predictions).numpy()",
                    "torch.cat(predictions).numpy().astype(float)",
                ),
                "confusion_matrix": CONFUSION_PREDICTIONS_DTYPE,
            },
            {"predict/returns_int_array": "entiers"},
        ),
        Submission(
            "ok_confusion_sorted_rows",
            "Confusion matrix counted over rows sorted by label (both sides in the same order).",
            {**base, "confusion_matrix": CONFUSION_SORTED_BOTH},
        ),
        Submission(
            "accuracy_sorted_labels",
            "accuracy compares the predictions with the sorted labels: wrong with any predict.",
            {**base, "accuracy": ACCURACY_SORTED_LABELS},
            {"accuracy/matches_reference": "référence"},
        ),
        Submission(
            "accuracy_batches_drop_last",
            "accuracy over batches of 32 that drops the last, partial batch (37, 81 and 120 rows "
            "are not multiples of 32).",
            {**base, "accuracy": ACCURACY_BATCHES_DROP_LAST},
            {"accuracy/matches_reference": "référence"},
        ),
        Submission(
            "ok_accuracy_batches",
            "accuracy over batches of 32, the last one partial.",
            {**base, "accuracy": ACCURACY_BATCHES},
        ),
        Submission(
            "ok_accuracy_eval_then_predict",
            "accuracy calls model.eval() then the student's predict, which ends with model.train(): "
            "as written the model comes back in training mode, so nothing is changed.",
            {**base, "accuracy": ACCURACY_EVAL_THEN_PREDICT},
        ),
        Submission(
            "cascade_predict_tensor",
            "predict returns a torch tensor; accuracy written for that tensor (.float().mean().item()), "
            "right with the student's own predict: only predict's type costs a point.",
            {
                **base,
                "predict": swap(
                    solution["predict"], "torch.cat(predictions).numpy()", "torch.cat(predictions)"
                ),
                "accuracy": ACCURACY_FOR_TENSOR_PREDICT,
            },
            {"predict/returns_int_array": "tenseur"},
        ),
        # Types the statement and the visible tests require
        Submission(
            "predict_returns_list",
            "predict returns a Python list of ints.",
            {
                **base,
                "predict": swap(
                    solution["predict"],
                    "torch.cat(predictions).numpy()",
                    "torch.cat(predictions).tolist()",
                ),
            },
            {"predict/returns_int_array": "np.ndarray"},
        ),
        Submission(
            "accuracy_returns_float32",
            "accuracy returns a numpy.float32 (not a Python float: the visible test fails).",
            {**base, "accuracy": swap(solution["accuracy"], "return float(", "return np.float32(")},
            {"accuracy/range": "float"},
        ),
        Submission(
            "accuracy_returns_tensor",
            "accuracy returns a 0-d torch tensor.",
            {
                **base,
                "accuracy": swap(
                    solution["accuracy"],
                    "return float(np.mean(predict(model, dataset) == labels))",
                    "return torch.as_tensor(predict(model, dataset) == labels).double().mean()",
                ),
            },
            {"accuracy/range": "float"},
        ),
        Submission(
            "confusion_float_counts",
            "Confusion matrix of float counts (np.zeros without dtype): the visible test asks for ints.",
            {
                **base,
                "confusion_matrix": swap(
                    solution["confusion_matrix"],
                    "np.zeros((10, 10), dtype=np.int64)",
                    "np.zeros((10, 10))",
                ),
            },
            {"confusion_matrix/counts": "entier"},
        ),
        Submission(
            "confusion_tensor",
            "Confusion matrix returned as a torch tensor.",
            {**base, "confusion_matrix": confusion_tensor()},
            {"confusion_matrix/shape": "np.ndarray"},
        ),
        Submission(
            "activation_returns_numpy",
            "Activation maps returned as a NumPy array.",
            {
                **base,
                "activation_maps": swap(
                    solution["activation_maps"],
                    "return maps / maps.flatten",
                    "maps = maps / maps.flatten",
                )
                + "\n    return maps.numpy()",
            },
            {"activation_maps/shape_range": "tenseur"},
        ),
        Submission(
            "train_returns_tuple",
            "Correct loop, returns a tuple of losses.",
            {
                **base,
                "train": swap(train_loop(), "return loss_history", "return tuple(loss_history)"),
            },
            {"train/returns_history": "liste"},
        ),
        Submission(
            "train_returns_tensors",
            "Correct loop, the epoch loss summed as tensors (loss, not loss.item()): tensors with a graph.",
            {
                **base,
                "train": swap(train_loop(), "epoch_loss += loss.item()", "epoch_loss += loss"),
            },
            {"train/returns_history": "item()"},
        ),
        Submission(
            "ok_types",
            "Return types at the edge of what the statement allows: predict int32 (eval mode restored, "
            "inference_mode), accuracy through the confusion matrix, per-class accuracy as a list, "
            "activation maps with eval mode restored.",
            {
                **base,
                "predict": PREDICT_WAS_TRAINING,
                "accuracy": ACCURACY_VIA_CONFUSION,
                "confusion_matrix": confusion_cell(per_class=PER_CLASS_LIST),
                "activation_maps": ACTIVATION_EVAL_RESTORED,
            },
        ),
        Submission(
            "ok_evaluation_styles",
            "predict without model.eval() (torch.no_grad() only, the model's mode untouched), accuracy "
            "returning np.float64 (a float), confusion matrix from np.bincount, epoch means from np.mean.",
            {
                **base,
                "train": train_loop(append="np.mean([epoch_loss / epoch_length])"),
                "predict": PREDICT_NO_EVAL,
                "accuracy": ACCURACY_NUMPY_SCALAR,
                "confusion_matrix": CONFUSION_BINCOUNT,
            },
        ),
        # What the statement says not to do
        Submission(
            "activation_hook_left",
            "The forward hook is never removed (no handle.remove()).",
            {**base, "activation_maps": ACTIVATION_HOOK_LEFT},
            {"activation_maps/hook_removed": "handle.remove()"},
        ),
        Submission(
            "predict_leaves_eval",
            "predict calls model.eval() and never puts the model back in training mode.",
            {**base, "predict": swap(solution["predict"], "    model.train()\n", "")},
            {"predict/leaves_arguments": "model.train"},
        ),
        Submission(
            "predict_set_format",
            "predict switches the caller's dataset to torch with set_format (and forgets model.eval()).",
            {**base, "predict": PREDICT_SET_FORMAT},
            {"predict/leaves_arguments": "set_format"},
        ),
        Submission(
            "train_set_format",
            "train switches the caller's dataset to torch with set_format.",
            {**base, "train": train_set_format()},
            {"train/uses_arguments": "set_format"},
        ),
        Submission(
            "accuracy_leaves_eval",
            "accuracy does its own forward pass in eval mode and leaves the model there (beside a "
            "wrong predict, which it does not call).",
            {
                **base,
                "predict": transposed_predict,
                "accuracy": ACCURACY_OWN_FORWARD_IN_EVAL,
            },
            {"accuracy/leaves_arguments": "model.train", "predict/matches_reference": "référence"},
        ),
        Submission(
            "confusion_requires_grad",
            "confusion_matrix turns requires_grad off on the model's parameters instead of torch.no_grad().",
            {**base, "confusion_matrix": confusion_requires_grad()},
            {"confusion_matrix/leaves_arguments": "requires_grad"},
        ),
        Submission(
            "per_class_in_place",
            "per_class_accuracy computes the recall right but zeroes the caller's diagonal.",
            {**base, "confusion_matrix": confusion_cell(per_class=PER_CLASS_IN_PLACE)},
            {"per_class_accuracy/matches_reference": "en place"},
        ),
        # Evaluation and plotting traps
        Submission(
            "accuracy_percent",
            "Accuracy in percent.",
            {
                **base,
                "accuracy": swap(solution["accuracy"], "return float(", "return 100 * float("),
            },
            {"accuracy/range": "pourcentage"},
        ),
        Submission(
            "accuracy_global_data",
            "Accuracy computed on the notebook's global test_dataset, not the argument.",
            {**base, "accuracy": ACCURACY_GLOBAL_DATA},
            {"accuracy/matches_reference": "variable globale"},
        ),
        Submission(
            "confusion_transposed",
            "Confusion matrix with rows = predicted class.",
            {**base, "confusion_matrix": confusion_cell("guess, true")},
            {"confusion_matrix/orientation": "transposée"},
        ),
        Submission(
            "confusion_normalised",
            "Confusion matrix divided by its row sums (proportions, NaN row for the absent class).",
            {
                **base,
                "confusion_matrix": confusion_cell(
                    transform=" / confusion.sum(axis=1, keepdims=True)",
                    per_class=PER_CLASS_ZERO_FOR_ABSENT,
                ),
            },
            {"confusion_matrix/counts": "normalisée"},
        ),
        Submission(
            "confusion_unique_classes",
            "Confusion matrix over np.unique(labels): 9x9 when a class is absent from the data.",
            {**base, "confusion_matrix": CONFUSION_UNIQUE},
            {"confusion_matrix/shape": "absente", "confusion_matrix/orientation": "forme"},
        ),
        Submission(
            "per_class_columns",
            "Per-class accuracy from column sums: the precision.",
            {**base, "confusion_matrix": confusion_cell(per_class=PER_CLASS_COLUMNS)},
            {"per_class_accuracy/matches_reference": "précision"},
        ),
        Submission(
            "curve_global_history",
            "Learning curve of the notebook's global loss_history, not the argument.",
            {**base, "plot_learning_curve": CURVE_GLOBAL_HISTORY},
            {"learning_curve/line_data": "argument"},
        ),
        Submission(
            "activation_not_normalised",
            "Activation maps not divided by their maximum: values above 1.",
            {**base, "activation_maps": ACTIVATION_NOT_NORMALISED},
            {
                "activation_maps/shape_range": "[0, 1]",
                "activation_maps/matches_reference": "maximum",
            },
        ),
        Submission(
            "curve_x_from_zero",
            "ax.plot(loss_history): epochs numbered from 0.",
            {**base, "plot_learning_curve": CURVE_X_FROM_ZERO},
            {"learning_curve/line_data": "abscisse"},
        ),
    ]


# --------------------------------------------------------------------------------------------
# Writing


def cells_by_grade_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell
        for cell in nb.cells
        if "grade_id" in cell.get("metadata", {}).get("nbgrader", {})
    }


def build_notebook(release: NotebookNode, submission: Submission, *, slim: bool = False) -> str:
    """The release with ``submission``'s cells; ``slim`` drops the prose (Markdown without grade_id)."""
    nb = copy.deepcopy(release)
    if slim:
        nb.cells = [
            c for c in nb.cells if c.cell_type == "code" or "nbgrader" in c.get("metadata", {})
        ]
    cells = cells_by_grade_id(nb)
    for grade_id, source in submission.cells.items():
        cell = cells.get(grade_id)
        if cell is None or not cell.metadata["nbgrader"].get("solution"):
            raise SystemExit(f"{submission.name}: the release has no solution cell {grade_id!r}.")
        cell.source = source
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(nb) + "\n"


def expected_json(submissions: list[Submission]) -> str:
    table = {}
    for s in submissions:
        table[s.name] = {"description": s.description, "failed": dict(sorted(s.failed.items()))}
        if s.cell_errors:
            table[s.name]["cell_errors"] = list(s.cell_errors)
        if s.known_gap:
            table[s.name]["known_gap"] = s.known_gap
        if s.notes:
            table[s.name]["notes"] = dict(sorted(s.notes.items()))
    return json.dumps(table, ensure_ascii=False, indent=2) + "\n"


def build(root: Path = ROOT) -> list[Path]:
    """Write every notebook and expected.json under ``root``; returns the paths written."""
    release = nbformat.read(RELEASE, as_version=4)
    release_sources = {k: c.source for k, c in cells_by_grade_id(release).items()}
    solution = parse_solution()
    written = []
    for folder, submissions, slim in (
        (EXAMPLES_DIR, examples(solution, release_sources), False),
        (VARIANTS_DIR, variants(solution), True),
    ):
        names = [s.name for s in submissions]
        if len(set(names)) != len(names):
            raise SystemExit(f"duplicate names in {folder}: {names}")
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for stale in sorted(set(target.glob("*.ipynb")) - {target / f"{n}.ipynb" for n in names}):
            stale.unlink()
        outputs = {f"{s.name}.ipynb": build_notebook(release, s, slim=slim) for s in submissions}
        outputs["expected.json"] = expected_json(submissions)
        for filename, text in outputs.items():
            path = target / filename
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="write under this directory (default: the repository)",
    )
    args = parser.parse_args()
    for path in build(args.root):
        print(path.relative_to(args.root))


if __name__ == "__main__":
    main()
