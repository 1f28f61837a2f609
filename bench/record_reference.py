"""Record what the reference implementation achieves on the real CIFAR-10.

    make reference        # runs: .venv/bin/python bench/record_reference.py

Data: the directory in ``$TDKIT_CIFAR10``, else ``../shared/cifar10`` next to the repository
(the hub's parquet layout: ``plain_text/{train,test}-*.parquet``). Writes
``reference/results.json``; about 5 minutes on 2 CPU cores when nothing else runs.

What runs, every model evaluated on the full test split, on ``THREADS`` threads:
1. ``reference.train_minibatch`` with the default ``MiniBatchRecipe`` on the full training
   split, ``N_RUNS`` times: seeds ``recipe.seed``, ``recipe.seed + 1``, ... (the recipe's seed,
   and the initial weights through ``torch.manual_seed(seed)``). The first is the headline run;
   mean and spread cover all of them.
2. The TD's per-sample loop, fixed (``reference.train``), SGD ``lr=PER_SAMPLE_LR``, one epoch
   over the first ``PER_SAMPLE_ROWS`` training rows in dataset order.
3. The TD's loop as taught (``backward`` then ``zero_grad``, no ``step``), one epoch over the
   first ``BUGGY_ROWS`` rows: the weights never change, the accuracy stays at chance.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ``reference`` is a directory of the repository, not installed

import reference
from reference.minibatch import MiniBatchRecipe
from tdkit.data import ENV_VAR, Prepared, load_cifar10, prepare, to_zdata_dataset

DEFAULT_DATA = REPO.parent / "shared" / "cifar10"
RESULTS = REPO / "reference" / "results.json"
THREADS = 2  # the TD's machines: 2 CPU cores
N_RUNS = 3  # mini-batch runs, seeds recipe.seed, recipe.seed + 1, ...; the first is the headline
PER_SAMPLE_LR = 0.003  # PRODUCT.md: 0.03 barely learns, 0.003 reaches about 45 %
PER_SAMPLE_ROWS = 20_000  # one epoch of per-sample steps: about 2 minutes
BUGGY_ROWS = 2_000  # enough to show that nothing moves


def main() -> dict:
    source = Path(os.environ.get(ENV_VAR) or DEFAULT_DATA)
    if not source.is_dir():
        sys.exit(
            f"No CIFAR-10 copy at {source}. Set {ENV_VAR}=/path/to/cifar10 (the hub's parquet "
            f"layout: plain_text/train-*.parquet, plain_text/test-*.parquet) and rerun."
        )
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    print(f"Loading and z-scoring CIFAR-10 from {source}", flush=True)
    data = prepare(load_cifar10(source))
    train = to_zdata_dataset(data.x_train, data.y_train)
    test = to_zdata_dataset(data.x_test, data.y_test)
    results = {
        "command": "make reference  (.venv/bin/python bench/record_reference.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "source": str(source),
            "n_train": len(train),
            "n_test": len(test),
            "channel_mean": data.mean.tolist(),
            "channel_std": data.std.tolist(),
        },
        "environment": _environment(),
        "minibatch": _minibatch_runs(train, test),
        "per_sample": _per_sample_run(_first_rows(data, PER_SAMPLE_ROWS), test),
        "td_buggy_loop": _buggy_run(_first_rows(data, BUGGY_ROWS), test),
    }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.write_text(_to_json(results))
    print(f"Wrote {RESULTS} in {results['total_seconds']} s")
    return results


def _to_json(results: dict) -> str:
    text = json.dumps(results, indent=1)
    # Lists of numbers on one line each: a confusion matrix reads as ten rows.
    return (
        re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: f"[{' '.join(m[1].split())}]", text) + "\n"
    )


def _environment() -> dict:
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        # Other work on the machine slows every timing below: this says how busy it was.
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def _first_rows(data: Prepared, n: int) -> datasets.Dataset:
    return to_zdata_dataset(data.x_train[:n], data.y_train[:n])


def _minibatch_runs(train: datasets.Dataset, test: datasets.Dataset) -> dict:
    recipe = MiniBatchRecipe()
    runs = []
    for seed in range(recipe.seed, recipe.seed + N_RUNS):
        run_recipe = dataclasses.replace(recipe, seed=seed)
        torch.manual_seed(seed)
        model = reference.ConvNet()
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        loss_history = reference.train_minibatch(model, train, run_recipe)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        confusion = reference.confusion_matrix(model, test)
        run = {
            "seed": seed,
            "test_accuracy": round(float(np.trace(confusion) / confusion.sum()), 4),
            "train_accuracy": round(reference.accuracy(model, train), 4),
            "train_seconds": round(wall, 1),
            "train_cpu_seconds": round(cpu, 1),
            # 1-minute load averages: above THREADS, other work shared the cores.
            "load_average_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
            "loss_history": [round(loss, 4) for loss in loss_history],
            "confusion_matrix": confusion.tolist(),
            "per_class_accuracy": [
                round(float(a), 4) for a in reference.per_class_accuracy(confusion)
            ],
        }
        print(
            f"mini-batch seed {seed}: test {run['test_accuracy']:.2%}, "
            f"train {run['train_accuracy']:.2%}, {run['train_seconds']} s",
            flush=True,
        )
        runs.append(run)
    accuracies = np.array([run["test_accuracy"] for run in runs])
    seconds = np.array([run["train_seconds"] for run in runs])
    return {
        "what": "reference.train_minibatch(ConvNet(), full train split, MiniBatchRecipe(seed=s)), "
        "weights from torch.manual_seed(s)",
        "recipe": dataclasses.asdict(recipe),
        # The headline: the recipe as written (its default seed).
        **{key: runs[0][key] for key in runs[0] if key != "seed"},
        "runs": runs,
        "summary": {
            "seeds": [run["seed"] for run in runs],
            "test_accuracy_mean": round(float(accuracies.mean()), 4),
            "test_accuracy_std": round(float(accuracies.std(ddof=1)), 4) if len(runs) > 1 else 0.0,
            "test_accuracy_min": float(accuracies.min()),
            "test_accuracy_max": float(accuracies.max()),
            "train_seconds_mean": round(float(seconds.mean()), 1),
            "train_seconds_min": float(seconds.min()),
            "train_seconds_max": float(seconds.max()),
        },
    }


def _per_sample_run(subset: datasets.Dataset, test: datasets.Dataset) -> dict:
    torch.manual_seed(0)
    model = reference.ConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=PER_SAMPLE_LR)
    wall = time.perf_counter()
    loss_history = reference.train(model, optimizer, subset, n_epochs=1)
    wall = time.perf_counter() - wall
    result = {
        "what": f"reference.train(ConvNet(), SGD(lr={PER_SAMPLE_LR}), first {PER_SAMPLE_ROWS} "
        "training rows in dataset order, n_epochs=1), weights from torch.manual_seed(0)",
        "optimizer": {"name": "SGD", "lr": PER_SAMPLE_LR, "momentum": 0.0},
        "n_train": PER_SAMPLE_ROWS,
        "n_epochs": 1,
        "seed": 0,
        "test_accuracy": round(reference.accuracy(model, test), 4),
        "loss_history": [round(loss, 4) for loss in loss_history],
        "train_seconds": round(wall, 1),
    }
    print(f"per-sample loop: test {result['test_accuracy']:.2%}, {result['train_seconds']} s")
    return result


def td_buggy_train(model, optimizer, dataset, n_epochs):
    """The TD's loop as taught: ``backward`` then ``zero_grad``, and never ``step``."""
    loss_history = []
    for _ in range(n_epochs):
        epoch_loss = 0.0
        for row in dataset.with_format("torch"):
            output = model(row["zdata"].to(torch.float32).unsqueeze(0))
            loss = F.cross_entropy(output.view(-1), row["label"])
            loss.backward()
            optimizer.zero_grad()
            epoch_loss += loss.item()
        loss_history.append(epoch_loss / len(dataset))
    return loss_history


def _buggy_run(subset: datasets.Dataset, test: datasets.Dataset) -> dict:
    torch.manual_seed(0)
    model = reference.ConvNet()
    initial = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03)  # the TD's learning rate
    wall = time.perf_counter()
    loss_history = td_buggy_train(model, optimizer, subset, n_epochs=1)
    wall = time.perf_counter() - wall
    unchanged = all(torch.equal(a, b) for a, b in zip(initial, model.parameters()))
    result = {
        "what": f"the TD's loop (backward, zero_grad, no step), SGD(lr=0.03), first {BUGGY_ROWS} "
        "training rows, n_epochs=1, weights from torch.manual_seed(0)",
        "n_train": BUGGY_ROWS,
        "n_epochs": 1,
        "seed": 0,
        "weights_unchanged": unchanged,
        "test_accuracy": round(reference.accuracy(model, test), 4),
        "loss_history": [round(loss, 4) for loss in loss_history],
        "train_seconds": round(wall, 1),
    }
    print(f"TD's buggy loop: test {result['test_accuracy']:.2%}, weights unchanged: {unchanged}")
    return result


if __name__ == "__main__":
    main()
