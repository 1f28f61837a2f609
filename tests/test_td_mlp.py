"""Is td_mlp graded as ``examples/td_mlp/submissions/expected.json`` says, by its real hidden checks?

Each example notebook goes through a function-level harness (its import, parameters and solution
cells executed in a fresh namespace: no kernel, no data cells), td_mlp's real probe
(``grader_tests/td_mlp/probe.py``) and its real hidden checks, as ``tests/test_traps.py`` does for
td_cnn. Beside the examples, a few one-function variants of the solution show that each check
catches the mistake it is written for, with the message that names the fix.
"""

from __future__ import annotations

import json
import re
import tempfile
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import numpy as np
import pytest
import torch
from conftest import built_examples

from tdkit.reports.results import CheckResult
from tdkit.trusted.checks import run_checks
from tdkit.untrusted.probe import run_probe

ROOT = Path(__file__).resolve().parents[1]
NAME = "td_mlp"
GRADER_TESTS = ROOT / "grader_tests" / NAME
SOURCE_MD = ROOT / "source" / NAME / f"{NAME}.md"
EXAMPLES = ROOT / "examples" / NAME / "submissions"
HIDDEN_CALL = re.compile(r"""check\(\s*["']([a-z_]+)["']\s*,\s*globals\(\)\s*\)""")
CELL_ERRORS = "__cell_errors__"
EXPECTED = json.loads((EXAMPLES / "expected.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# The harness


def _stand_in_globals(parameters: dict[str, Any]) -> dict[str, Any]:
    """What the notebook's data cells leave behind, small: its functions see the globals they
    would see in the graded kernel instead of raising NameError."""
    generator = torch.Generator().manual_seed(parameters["SEED"])
    found: dict[str, Any] = {
        "channel_mean": np.array([125.3, 123.0, 113.9]),
        "channel_std": np.array([63.0, 62.1, 66.7]),
    }
    for split, rows in (("train", 40), ("val", 20), ("test", 20)):
        found[f"{split}_x"] = torch.randn(rows, 3 * 32 * 32, generator=generator)
        found[f"{split}_y"] = torch.randint(0, 10, (rows,), generator=generator)
    return found


def namespace_from_notebook(path: Path) -> dict[str, Any]:
    """The globals a submission's functions see: its import cell, its parameters cell (with the
    grading profile's values), stand-ins for the data cells, then its solution cells in order;
    a cell that raises is recorded in ``CELL_ERRORS`` and the next ones still run."""
    import matplotlib

    from grader_tests.td_mlp.assignment import Parameters

    matplotlib.use("Agg")
    nb = nbformat.v4.reads(path.read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {"__name__": "__main__", CELL_ERRORS: []}
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    for position, cell in enumerate(code_cells):
        meta = cell.get("metadata", {})
        is_parameters = "parameters" in meta.get("tags", [])
        if not (position == 0 or is_parameters or meta.get("nbgrader", {}).get("solution")):
            continue
        grade_id = meta.get("nbgrader", {}).get("grade_id", f"cell {position}")
        try:
            exec(compile(cell.source, f"<cell {grade_id}>", "exec"), namespace)  # noqa: S102
        except Exception as error:  # noqa: BLE001 - the kernel would go on to the next cell
            line = traceback.format_exception_only(type(error), error)[-1].strip()
            namespace[CELL_ERRORS].append(f"{grade_id}: {line}")
        if is_parameters:
            profile = {k: v for k, v in vars(Parameters()).items() if k != "DATA_SOURCE"}
            namespace.update(profile)
            namespace.update(_stand_in_globals(namespace))
    return namespace


def grade(namespace: dict[str, Any], out: Path) -> dict[str, CheckResult]:
    run_probe(namespace, out, NAME)
    return {r.check_id: r for r in run_checks(out, GRADER_TESTS)}


# --------------------------------------------------------------------------------------------
# The examples


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_graded_as_expected(name: str, tmp_path: Path) -> None:
    """Does each example fail exactly the checks expected.json names, each message with its
    keyword, and raise in its cells only the errors it lists?"""
    outcome = EXPECTED[name]
    namespace = namespace_from_notebook(EXAMPLES / f"{name}.ipynb")
    results = grade(namespace, tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    report = "\n".join(f"  {cid}: {msg}" for cid, msg in sorted(failed.items()))
    assert set(failed) == set(outcome["failed"]), (
        f"{name}: expected failures {sorted(outcome['failed'])}, got:\n{report}\n"
        f"cell errors: {namespace[CELL_ERRORS]}"
    )
    for check_id, keyword in outcome["failed"].items():
        assert keyword.lower() in failed[check_id].lower(), (
            f"{name}: the message of {check_id} should mention {keyword!r}:\n  {failed[check_id]}"
        )
    raised = [line.split(": ")[1] for line in namespace[CELL_ERRORS]]
    assert raised == outcome.get("cell_errors", []), f"{name}: {namespace[CELL_ERRORS]}"
    for result in results.values():
        assert result.points == (result.max_points if result.passed else 0.0)
        assert result.message


# --------------------------------------------------------------------------------------------
# One mistake at a time, on the solution


NORMALIZE_IN_PLACE = """
def normalize(images, mean, std):
    images -= mean
    images /= std
    return torch.as_tensor(images.transpose(0, 3, 1, 2).reshape(len(images), -1), dtype=torch.float32)
"""

# In place on its own float64 copy of uint8 images, but on the caller's array when given floats.
NORMALIZE_FLOAT_IN_PLACE = """
def normalize(images, mean, std):
    x = np.array(images, dtype=np.float64) if images.dtype == np.uint8 else images
    x -= mean
    x /= std
    return torch.as_tensor(x.transpose(0, 3, 1, 2).reshape(len(x), -1), dtype=torch.float32)
"""

NORMALIZE_FLOAT64 = """
def normalize(images, mean, std):
    z = (np.asarray(images, dtype=np.float64) - mean) / std
    return torch.from_numpy(z.transpose(0, 3, 1, 2).reshape(len(z), -1))
"""

MLP_SOFTMAX = """
class MLP(torch.nn.Module):
    def __init__(self, hidden=(512, 256), n_classes=10):
        super().__init__()
        sizes = [3072, *hidden]
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = torch.nn.Linear(sizes[-1], n_classes)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return torch.softmax(self.out(x), dim=1)
"""

MLP_FIXED_LAYERS = """
class MLP(torch.nn.Module):
    def __init__(self, hidden=(512, 256), n_classes=10):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(3072, 512), torch.nn.ReLU(),
            torch.nn.Linear(512, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, n_classes),
        )

    def forward(self, x):
        return self.layers(x)
"""

TRAIN_BATCH_LOSS = "batch_losses.append(loss.item())\n        train_losses.append(sum(batch_losses) / len(batch_losses))"
WEIGHTS_DIFFER = {"train_epochs/train_losses": "poids", "train_epochs/val_losses": "poids"}

# name -> (grade_id of the solution cell, the student's cell or an (old, new) edit of the
# solution's, the checks that must fail with a keyword of their message)
Edit = str | tuple[str, str]
VARIANTS: dict[str, tuple[str, Edit, dict[str, str]]] = {
    "normalize_in_place": (
        "normalize",
        NORMALIZE_IN_PLACE,
        {
            "normalize/returns_tensor": "erreur",
            "normalize/matches_reference": "erreur",
            "normalize/input_untouched": "erreur",
        },
    ),
    "normalize_float_in_place": (
        "normalize",
        NORMALIZE_FLOAT_IN_PLACE,
        {"normalize/input_untouched": "en place"},
    ),
    "normalize_float64": ("normalize", NORMALIZE_FLOAT64, {"normalize/returns_tensor": "float32"}),
    "mlp_softmax_output": ("model", MLP_SOFTMAX, {"model/forward": "softmax"}),
    "mlp_fixed_layers": (
        "model",
        MLP_FIXED_LAYERS,
        {"model/parameter_shapes": "hidden", "model/forward": "formes"},
    ),
    "train_no_step": (
        "train_epochs",
        ("            optimizer.step()\n", ""),
        {"train_epochs/matches_reference": "optimizer.step()", **WEIGHTS_DIFFER},
    ),
    "train_row_mean": (  # a mean over rows rather than mini-batches: accepted
        "train_epochs",
        (
            TRAIN_BATCH_LOSS,
            (
                "batch_losses.append(loss.item() * len(index))\n"
                "        train_losses.append(sum(batch_losses) / len(train_x))"
            ),
        ),
        {},
    ),
    "train_no_shuffle": (
        "train_epochs",
        ("torch.randperm(len(train_x))", "torch.arange(len(train_x))"),
        {"train_epochs/matches_reference": "randperm", **WEIGHTS_DIFFER},
    ),
    "train_whole_set_batches": (
        "train_epochs",
        ("order[start : start + batch_size]", "order"),
        {"train_epochs/matches_reference": "tranches", **WEIGHTS_DIFFER},
    ),
    "train_two_steps": (
        "train_epochs",
        ("            optimizer.step()\n", "            optimizer.step()\n" * 2),
        {"train_epochs/matches_reference": "pas d'optimisation", **WEIGHTS_DIFFER},
    ),
    "train_val_with_grad": (
        "train_epochs",
        ("        with torch.no_grad():\n", "        if True:\n"),
        {"train_epochs/eval_no_grad": "no_grad"},
    ),
    "train_leaves_eval": (
        "train_epochs",
        ("    model.train()\n    return", "    return"),
        {"train_epochs/leaves_arguments": "model.train()"},
    ),
    "train_returns_tensors": (
        "train_epochs",
        ("loss.item())\n        train", "loss.detach())\n        train"),
        {"train_epochs/returns_losses": "loss.item()"},
    ),
    "evaluate_leaves_eval": (
        "evaluate",
        ("        model.train(was_training)\n", "        pass\n"),
        {"evaluate/leaves_mode": "was_training"},
    ),
    "evaluate_tensor": (
        "evaluate",
        (
            "return int((predicted == torch.as_tensor(y)).sum()) / len(predicted)",
            "return (predicted == y).float().mean()",
        ),
        {"evaluate/returns_proportion": "float"},
    ),
    "evaluate_one_minus": (
        "evaluate",
        ("return int(", "return 1 - int("),
        {"evaluate/matches_reference": "argmax"},
    ),
    "plot_from_zero": (
        "plot_losses",
        ("np.arange(1, len(train_losses) + 1)", "np.arange(len(train_losses))"),
        {"plot_losses/line_data": "abscisse"},
    ),
    "plot_swapped_labels": (
        "plot_losses",
        ('label="entraînement")', 'label="validation")'),
        {"plot_losses/labels": "entraînement"},
    ),
    "plot_returns_axes": (
        "plot_losses",
        ("return fig", "return ax"),
        {
            "plot_losses/returns_figure": "return fig",
            "plot_losses/line_data": "train_losses",
            "plot_losses/labels": "axes",
        },
    ),
}


@cache
def solution_cells() -> dict[str, str]:
    """grade_id -> the source notebook's solution cell, markers removed."""
    cells = {}
    for cell in jupytext.read(SOURCE_MD, fmt="md").cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [line for line in cell.source.split("\n") if "### " not in line]
            cells[meta["grade_id"]] = "\n".join(lines)
    return cells


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_check_names_its_mistake(variant: str, tmp_path: Path) -> None:
    """Does one mistake in one function fail exactly the checks written for it, each message
    naming the fix, and nothing else?"""
    grade_id, edit, expected = VARIANTS[variant]
    if isinstance(edit, str):
        code = edit
    else:
        old, new = edit
        source = solution_cells()[grade_id]
        assert source.count(old) == 1, f"{variant}: {old!r} is not once in the solution"
        code = source.replace(old, new)
    namespace = namespace_from_notebook(EXAMPLES / "alice_solution.ipynb")
    exec(compile(code, f"<variant {variant}>", "exec"), namespace)  # noqa: S102
    results = grade(namespace, tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert set(failed) == set(expected), (
        f"{variant}: {json.dumps(failed, ensure_ascii=False, indent=1)}"
    )
    for check_id, keyword in expected.items():
        assert keyword.lower() in failed[check_id].lower(), f"{variant}: {failed[check_id]}"


# --------------------------------------------------------------------------------------------
# The assignment's files agree with one another


def test_every_check_is_exercised_with_its_own_message() -> None:
    """Does each hidden check fail in some example or variant for a reason other than a
    function not written or not defined?"""
    with tempfile.TemporaryDirectory(prefix="tdkit-empty-") as empty:
        all_ids = {r.check_id for r in run_checks(empty, GRADER_TESTS)}
    unwritten = {"basile_unanswered", "gaspard_crash_midway"}
    failing = {
        cid
        for name, outcome in EXPECTED.items()
        if name not in unwritten
        for cid in outcome["failed"]
    } | {cid for _, _, expected in VARIANTS.values() for cid in expected}
    assert all_ids - failing == set(), f"checks no mistake makes fail: {sorted(all_ids - failing)}"
    assert failing <= all_ids, f"unknown check ids: {sorted(failing - all_ids)}"


def test_group_points_match_cell_points() -> None:
    """Does each graded test cell carry the points of the hidden checks it calls, every group
    called once, for 17 automatic points and 3 by hand?"""
    with tempfile.TemporaryDirectory(prefix="tdkit-empty-") as empty:
        results = run_checks(empty, GRADER_TESTS)
    points: dict[str, float] = {}
    for result in results:
        points[result.group] = points.get(result.group, 0.0) + result.max_points
    called, hand = [], 0.0
    for cell in jupytext.read(SOURCE_MD, fmt="md").cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        if cell.cell_type == "markdown":
            hand += float(meta["points"])
            continue
        groups = HIDDEN_CALL.findall(cell.source)
        assert sum(points[g] for g in groups) == pytest.approx(float(meta["points"])), meta
        called += groups
    assert sorted(called) == sorted(points)
    assert (sum(points.values()), hand) == (17.0, 3.0)


def test_solution_cells_are_the_reference() -> None:
    """Do the notebook's solution cells compute exactly what ``reference.td_mlp`` does (same
    arithmetic, same order), so that the checks' tolerances only absorb float rounding?"""
    import matplotlib

    from reference import td_mlp as reference

    matplotlib.use("Agg")
    namespace: dict[str, Any] = {}
    exec("import numpy as np\nimport torch\nimport matplotlib.pyplot as plt", namespace)  # noqa: S102
    for source in solution_cells().values():
        exec(source, namespace)  # noqa: S102
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    mean, std = rng.uniform(100, 130, 3), rng.uniform(50, 70, 3)
    assert torch.equal(
        namespace["normalize"](images, mean, std), reference.normalize(images, mean, std)
    )
    x = torch.randn(30, 3072)
    y = torch.randint(0, 10, (30,))
    runs = []
    for mlp, train_epochs, evaluate in (
        (namespace["MLP"], namespace["train_epochs"], namespace["evaluate"]),
        (reference.MLP, reference.train_epochs, reference.evaluate),
    ):
        torch.manual_seed(1)
        model = mlp(hidden=(8,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = train_epochs(model, optimizer, x[:20], y[:20], x[20:], y[20:], 2, 8)
        runs.append((losses, evaluate(model, x, y), [p.detach() for p in model.parameters()]))
    assert runs[0][:2] == runs[1][:2]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))


def test_committed_files_are_fresh(tmp_path: Path) -> None:
    """Do ``examples/td_mlp/build_submissions.py`` and the ``.ipynb`` pair reproduce the
    committed files byte for byte?"""
    from tdkit.release.notebooks import pair_text

    assert (ROOT / "source" / NAME / f"{NAME}.ipynb").read_text(encoding="utf-8") == pair_text(
        SOURCE_MD
    )
    _, stale = built_examples(ROOT / "examples" / NAME / "build_submissions.py", tmp_path)
    assert not stale, f"run `.venv/bin/python examples/td_mlp/build_submissions.py`: stale {stale}"
