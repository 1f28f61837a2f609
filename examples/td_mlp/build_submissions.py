"""Build the example submissions of the TD "Perceptron multicouche" (td_mlp).

Usage, from the repository root::

    .venv/bin/python examples/td_mlp/build_submissions.py

Each notebook is the current ``release/td_mlp/td_mlp.ipynb`` with the source of some cells
replaced, found by their nbgrader ``grade_id``: the solution cells (``normalize``,
``model``, ``train_epochs``, ``plot_losses``, ``evaluate``) and the free-text answer cells
(``answer_overfitting``, ``answer_images``). The full solution is parsed from the solution
regions of the source notebook, never copied by hand; each mistake is written out as the
student's code.

Writes, with no outputs and the same bytes on every run, ``examples/td_mlp/submissions/
<student>.ipynb`` and ``examples/td_mlp/submissions/expected.json``: a full solution, the release
as is, and the mistakes students make in this TD, each with what a careful TA decides.

``expected.json`` maps each notebook's name to its ``description`` (the mistake, and the TA's
decision) and ``failed``: every check id (``<group>/<name>``) expected to fail, with a French
keyword its message must contain (case-insensitive). Every other check must pass.
``cell_errors`` lists the exceptions its solution cells raise when run top to bottom (none if
absent).

Run it again after changing the source notebook (after ``tdkit release td_mlp``):
``tests/test_td_mlp.py`` fails while the committed files are stale.
"""

from __future__ import annotations

import argparse
import copy
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
from nbformat.notebooknode import NotebookNode

ROOT = Path(__file__).resolve().parents[2]
SOURCE_MD = ROOT / "source" / "td_mlp" / "td_mlp.md"
RELEASE = ROOT / "release" / "td_mlp" / "td_mlp.ipynb"
EXAMPLES_DIR = Path("examples") / "td_mlp" / "submissions"

CODE_IDS = ("normalize", "model", "train_epochs", "plot_losses", "evaluate")
ANSWER_IDS = ("answer_overfitting", "answer_images")
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"

# Every hidden check, by group: what a function that raises fails (grader_tests/td_mlp/).
CHECKS = {
    "normalize": ("returns_tensor", "matches_reference", "input_untouched"),
    "model": ("parameter_shapes", "forward"),
    "train_epochs": (
        "returns_losses",
        "matches_reference",
        "train_losses",
        "val_losses",
        "eval_no_grad",
        "leaves_arguments",
    ),
    "plot_losses": ("returns_figure", "line_data", "labels"),
    "evaluate": ("returns_proportion", "matches_reference", "leaves_mode"),
}


# --------------------------------------------------------------------------------------------
# The solution, parsed from the source notebook


def solution_text(source: str) -> str:
    """A solution cell as the instructor wrote it, solution markers removed."""
    kept = [
        line for line in source.split("\n") if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)
    ]
    return "\n".join(kept).strip("\n")


def parse_solution(md_path: Path = SOURCE_MD) -> dict[str, str]:
    """grade_id -> solution source of every solution cell of the source notebook."""
    solutions = {}
    for cell in jupytext.read(md_path, fmt="md").cells:
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


def swap(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once; stops the build if the solution no longer has it."""
    if text.count(old) != 1:
        raise SystemExit(
            f"expected exactly one {old!r} in the solution:\n{text}\nUpdate {__file__}."
        )
    return text.replace(old, new)


ANSWERS = {
    "answer_overfitting": "La perte de validation remonte après la 5e époque alors que celle "
    "d'entraînement continue de baisser : le modèle sur-apprend. Je garderais l'époque 5.",
    "answer_images": "Le MLP met l'image à plat et ne sait pas quels pixels sont voisins ; un CNN "
    "partage ses filtres sur toute l'image.",
}

# The visible test catches it too; the student left the cell failing.
NORMALIZE_GLOBAL_STD = code('''
    def normalize(images, mean, std):
        """(N, H, W, C) -> tenseur float32 (N, C*H*W) : Z-scores par canal, mis à plat en (C, H, W)."""
        x = torch.as_tensor(images, dtype=torch.float32)
        z = (x - torch.as_tensor(mean, dtype=torch.float32)) / x.std()
        return z.permute(0, 3, 1, 2).reshape(len(z), -1)
''')

TRAIN_SUM_TRAIN_MODE = code('''
    def train_epochs(model, optimizer, train_x, train_y, val_x, val_y, n_epochs, batch_size):
        """Entraîne `model` par mini-batchs ; renvoie (pertes d'entraînement, pertes de validation)."""
        train_losses, val_losses = [], []
        for epoch in range(n_epochs):
            order = torch.randperm(len(train_x))
            epoch_loss = 0.0
            for start in range(0, len(train_x), batch_size):
                index = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(train_x[index]), train_y[index])
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item()
            train_losses.append(epoch_loss)
            val_loss = torch.nn.functional.cross_entropy(model(val_x), val_y)
            val_losses.append(val_loss.item())
            print(f"époque {epoch + 1} : {epoch_loss:.3f} / {val_loss.item():.3f}")
        return train_losses, val_losses
''')

PLOT_NO_LEGEND = code('''
    def plot_losses(train_losses, val_losses):
        """Figure matplotlib : pertes d'entraînement et de validation en fonction de l'époque."""
        fig, ax = plt.subplots()
        epochs = range(1, len(train_losses) + 1)
        ax.plot(epochs, train_losses)
        ax.plot(epochs, val_losses)
        ax.set_xlabel("époque")
        ax.set_ylabel("perte")
        return fig
''')


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


def every_check(keyword: str, *groups: str) -> dict[str, str]:
    """Every check of ``groups``, each failing with a message that says ``keyword``."""
    return {f"{group}/{name}": keyword for group in groups for name in CHECKS[group]}


def examples(solution: Mapping[str, str]) -> list[Submission]:
    student = {**{k: solution[k] for k in CODE_IDS}, **ANSWERS}
    crash = "# Combien de mini-batchs par époque ?\nprint(len(train_x) // BATCH_SIZ)\n\n\n"
    return [
        Submission(
            "alice_solution",
            "The instructor's solution (parsed from the source notebook) with its answers: full marks.",
            dict(solution),
        ),
        Submission(
            "basile_unanswered",
            "The release as is: every function still raises NotImplementedError, no answer. tdkit "
            "grade gives it 0 with one message, « Rien n'a été modifié » (tdkit.intake.identify); "
            "function by function, every check says the function is not written.",
            {},
            every_check("NotImplementedError", *CHECKS),
        ),
        Submission(
            "camille_hwc_order",
            "normalize flattens the (N, H, W, C) array without permuting its axes: the inputs are in "
            "(H, W, C) order. The MLP learns exactly as well (one fixed permutation of its inputs) "
            "and the rest is right, but the statement asks for PyTorch's (C, H, W) order (the next "
            "TD's CNN needs it) and its visible test says so: the TA takes the normalize points of "
            "that check only.",
            {
                **student,
                "normalize": swap(
                    solution["normalize"],
                    "z.permute(0, 3, 1, 2).reshape(len(z), -1)",
                    "z.reshape(len(z), -1)",
                ),
            },
            {"normalize/matches_reference": "(C, H, W)"},
        ),
        Submission(
            "damien_batch_std",
            "normalize divides by the standard deviation of the images it is given (one number over "
            "all pixels and channels) instead of the train's per-channel std passed as argument: "
            "validation and test are scaled by their own statistics. Wrong normalisation, the rest "
            "right: the TA takes the normalize points of that check.",
            {**student, "normalize": NORMALIZE_GLOBAL_STD},
            {"normalize/matches_reference": "écart-type"},
        ),
        Submission(
            "elise_sum_train_mode",
            "train_epochs returns the sum of the mini-batch losses (not their mean: the train curve is "
            "n_batches times too high next to the validation one, so the overfitting cannot be read "
            "from the figure) and computes the validation loss in training mode with gradients. "
            "The weights are right; this MLP has no Dropout so the validation values are right too, "
            "but the statement asks for eval mode and no_grad (it matters as soon as Dropout is "
            "added, and the graph over the whole validation set costs memory): the TA takes the "
            "points of those two checks.",
            {**student, "train_epochs": TRAIN_SUM_TRAIN_MODE},
            {
                "train_epochs/train_losses": "somme",
                "train_epochs/eval_no_grad": "model.eval()",
            },
        ),
        Submission(
            "fanny_percent_no_legend",
            "evaluate returns a percentage (0-100) and plot_losses draws two unlabelled lines "
            "without a legend (axes named): both against the statement and its visible tests.",
            {
                **student,
                "evaluate": swap(solution["evaluate"], "return int(", "return 100 * int("),
                "plot_losses": PLOT_NO_LEGEND,
            },
            {"evaluate/returns_proportion": "pourcentage", "plot_losses/labels": "légende"},
        ),
        Submission(
            "gaspard_crash_midway",
            "A typo (NameError) at the top of the train_epochs cell stops that cell before "
            "train_epochs is defined; the cells after it run, so every other function is still "
            "graded, and train_epochs gets 0 with a message naming the error.",
            {**student, "train_epochs": crash + solution["train_epochs"]},
            every_check("erreur", "train_epochs"),
            cell_errors=("NameError",),
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


def build_notebook(release: NotebookNode, submission: Submission) -> str:
    """The release with ``submission``'s cells."""
    nb = copy.deepcopy(release)
    cells = cells_by_grade_id(nb)
    for grade_id, source in submission.cells.items():
        cell = cells.get(grade_id)
        if cell is None or not cell.metadata["nbgrader"].get("solution"):
            raise SystemExit(f"{submission.name}: the release has no solution cell {grade_id!r}.")
        cell.source = source
    return nbformat.writes(nb) + "\n"


def expected_json(submissions: list[Submission]) -> str:
    table: dict[str, dict[str, object]] = {}
    for s in submissions:
        table[s.name] = {"description": s.description, "failed": dict(sorted(s.failed.items()))}
        if s.cell_errors:
            table[s.name]["cell_errors"] = list(s.cell_errors)
    return json.dumps(table, ensure_ascii=False, indent=2) + "\n"


def build(root: Path = ROOT) -> list[Path]:
    """Write every notebook and expected.json under ``root``; returns the paths written."""
    release = nbformat.read(RELEASE, as_version=4)
    submissions = examples(parse_solution())
    names = [s.name for s in submissions]
    if len(set(names)) != len(names):
        raise SystemExit(f"duplicate names in {EXAMPLES_DIR}: {names}")
    target = root / EXAMPLES_DIR
    target.mkdir(parents=True, exist_ok=True)
    for stale in sorted(set(target.glob("*.ipynb")) - {target / f"{n}.ipynb" for n in names}):
        stale.unlink()
    outputs = {f"{s.name}.ipynb": build_notebook(release, s) for s in submissions}
    outputs["expected.json"] = expected_json(submissions)
    written = []
    for filename, text in outputs.items():
        path = target / filename
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
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
