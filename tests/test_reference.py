"""Does the reference implementation (the oracle of every hidden check) do what the TD asks?

Tiny data made here (a few rows of CIFAR shape), so the whole file runs in seconds. The last
tests read ``reference/results.json``, written by ``make reference`` on the real CIFAR-10.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import datasets
import matplotlib.figure
import numpy as np
import pytest
import torch

import reference
from reference.lookahead import Lookahead
from reference.minibatch import MiniBatchRecipe, fast_forward, predict_minibatch, random_flips
from reference.strongnet import StrongRecipe
from tdkit.release.notebooks import read_source
from tdkit.release.parameters import declared_parameters

RESULTS = Path(reference.__file__).resolve().parent / "results.json"
SOURCE_NOTEBOOK = Path(reference.__file__).resolve().parents[1] / "source" / "td_cnn" / "td_cnn.md"
N_ROWS = 24


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and lose a lot when other work shares the cores."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def zdata_dataset(n: int = N_ROWS, seed: int = 0, labels: np.ndarray | None = None):
    """``n`` rows of random (3, 32, 32) float32 ``zdata`` and int labels, as in the TD."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n) if labels is None else np.asarray(labels)
    return datasets.Dataset.from_dict({"zdata": list(x), "label": y.astype(np.int64)})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


class LabelReader(torch.nn.Module):
    """Predicts the class written in pixel (0, 0, 0) of each image: outputs chosen by the test."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()


def reader_dataset(true: list[int], predicted: list[int]) -> datasets.Dataset:
    x = np.zeros((len(true), 3, 32, 32), dtype=np.float32)
    x[:, 0, 0, 0] = predicted
    return datasets.Dataset.from_dict({"zdata": list(x), "label": np.asarray(true)})


def test_to_chw_keeps_rows_as_height() -> None:
    """Is pixel (row h, column w) of channel c found at [c, h, w], not at [c, w, h]?"""
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    image[0, 3, :, 0] = 255  # a horizontal red line on row 3: not symmetric under transposition
    image[0, :, 20, 2] = 128  # a vertical blue line on column 20
    chw = reference.to_chw(image)
    assert chw.shape == (1, 3, 32, 32)
    assert np.all(chw[0, 0, 3, :] == 255) and chw[0, 0].sum() == 255 * 32
    assert np.all(chw[0, 2, :, 20] == 128) and chw[0, 2].sum() == 128 * 32
    rectangle = np.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)  # H != W: a transposition shows
    assert np.array_equal(reference.to_chw(rectangle), rectangle.transpose(0, 3, 1, 2))


def test_train_returns_one_mean_loss_per_epoch_and_moves_the_weights() -> None:
    """Does ``train`` return ``n_epochs`` mean losses, and does it actually step?"""
    torch.manual_seed(0)
    model = reference.ConvNet()
    before = weights(model)
    history = reference.train(
        model, torch.optim.SGD(model.parameters(), lr=0.003), zdata_dataset(), 3
    )
    assert len(history) == 3 and all(math.isfinite(loss) and loss > 0 for loss in history)
    assert any(not torch.equal(before[name], p) for name, p in weights(model).items())


def test_first_epoch_loss_is_the_mean_over_rows_before_each_step() -> None:
    """Is an epoch's loss the mean of the per-row losses, each taken before its own step?"""
    data = zdata_dataset(n=5)
    torch.manual_seed(0)
    model = reference.ConvNet()
    twin = reference.ConvNet()
    twin.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.003)
    losses = []
    for row in data.with_format("torch"):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(row["zdata"][None]), row["label"][None])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    history = reference.train(model, torch.optim.SGD(model.parameters(), lr=0.003), data, 1)
    assert history[0] == pytest.approx(np.mean(losses), rel=1e-6)


def test_train_does_not_depend_on_where_zero_grad_sits() -> None:
    """Zeroing the gradients first, or right after ``step``: are the final weights the same?"""
    data = zdata_dataset()
    torch.manual_seed(0)
    model = reference.ConvNet()
    twin = reference.ConvNet()
    twin.load_state_dict(model.state_dict())
    reference.train(model, torch.optim.SGD(model.parameters(), lr=0.003), data, 2)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.003)
    for _ in range(2):
        for row in data.with_format("torch"):
            output = twin(row["zdata"].unsqueeze(0))
            torch.nn.functional.cross_entropy(output, row["label"].reshape(1)).backward()
            optimizer.step()
            optimizer.zero_grad()
    for name, p in weights(twin).items():
        torch.testing.assert_close(weights(model)[name], p, rtol=1e-6, atol=1e-7)


def test_confusion_matrix_rows_are_true_classes_and_absent_classes_are_zero_rows() -> None:
    """Is row = true class, column = predicted class, with a zero row for a class never seen?"""
    true = [0, 0, 1, 2, 2, 2]
    predicted = [0, 1, 1, 5, 2, 5]
    confusion = reference.confusion_matrix(LabelReader(), reader_dataset(true, predicted))
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(true, predicted):
        expected[t, p] += 1
    assert confusion.shape == (10, 10) and np.issubdtype(confusion.dtype, np.integer)
    assert np.array_equal(confusion, expected)  # [2, 5] == 2: true bird, predicted dog
    assert confusion[5].sum() == 0  # dog never occurs: its row is zeros, its column is not


def test_per_class_accuracy_is_recall_and_nan_for_absent_classes() -> None:
    """Is it diagonal / row sum (recall), NaN where a class has no example?"""
    confusion = np.zeros((10, 10), dtype=np.int64)
    confusion[0, 0], confusion[0, 1] = 3, 1  # class 0: 3 of 4 right
    confusion[1, 1], confusion[2, 1] = 2, 6  # class 1 predicted 8 times, right 2 of 2
    result = reference.per_class_accuracy(confusion)
    assert result.shape == (10,)
    assert result[0] == pytest.approx(0.75) and result[1] == pytest.approx(1.0)
    assert result[2] == 0.0
    assert np.all(np.isnan(result[3:]))


def test_accuracy_is_a_fraction_matching_predict() -> None:
    """Is ``accuracy`` in [0, 1], equal to the share of ``predict`` that matches the labels?"""
    data = reader_dataset([0, 1, 2, 3], [0, 1, 9, 9])
    assert reference.accuracy(LabelReader(), data) == 0.5
    assert np.array_equal(reference.predict(LabelReader(), data), [0, 1, 9, 9])
    torch.manual_seed(0)
    model, random_data = reference.ConvNet(), zdata_dataset()
    predicted = reference.predict(model, random_data)
    assert predicted.shape == (N_ROWS,) and np.issubdtype(predicted.dtype, np.integer)
    share = float(np.mean(predicted == np.asarray(random_data["label"])))
    assert 0.0 <= reference.accuracy(model, random_data) == share <= 1.0


def test_plot_learning_curve_draws_one_line_epoch_by_epoch() -> None:
    """One line, x = 1..n, y = the losses, both axes labelled?"""
    losses = [2.3, 1.9, 1.7, 1.6]
    fig = reference.plot_learning_curve(losses)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert np.array_equal(line.get_xdata(), [1, 2, 3, 4])
    assert np.allclose(line.get_ydata(), losses)
    assert ax.get_xlabel() and ax.get_ylabel()


def test_activation_maps_one_map_per_image_scaled_to_one() -> None:
    """Shape (N, 28, 28) after the 5x5 convolution, values in [0, 1], maximum 1 per image?"""
    torch.manual_seed(0)
    model = reference.ConvNet()
    images = torch.randn(4, 3, 32, 32)
    maps = reference.activation_maps(model, images)
    assert maps.shape == (4, 28, 28)
    assert maps.min() >= 0 and maps.max() <= 1
    torch.testing.assert_close(maps.flatten(1).amax(dim=1), torch.ones(4))
    assert not model.conv1._forward_hooks  # the hook is removed


def test_random_flips_mirror_about_half_of_the_images_and_nothing_else() -> None:
    """Is each image either untouched or mirrored left-right, about half of them mirrored?"""
    images = torch.randn(400, 3, 32, 32)
    flipped = random_flips(images, torch.Generator().manual_seed(0))
    same = torch.all((flipped == images).flatten(1), dim=1)
    mirrored = torch.all((flipped == images.flip(3)).flatten(1), dim=1)
    assert torch.all(same ^ mirrored)
    assert 150 < int(mirrored.sum()) < 250


def test_evaluation_ignores_the_other_columns_of_a_td_dataset() -> None:
    """The TD's dataset also keeps ``img`` and ``class``: same predictions as without them?"""
    data = zdata_dataset(n=6)
    td_like = datasets.Dataset.from_dict(
        {
            "img": list(np.zeros((6, 32, 32, 3), dtype=np.uint8)),
            "label": data["label"],
            "class": ["plane"] * 6,
            "zdata": data["zdata"],
        }
    )
    torch.manual_seed(0)
    model = reference.ConvNet()
    assert np.array_equal(reference.predict(model, td_like), reference.predict(model, data))


def test_train_minibatch_is_deterministic_given_the_seed() -> None:
    """Same initial weights, data and seed: same losses and weights; another seed: different?"""
    data = zdata_dataset(n=64)
    recipe = MiniBatchRecipe(n_epochs=2, batch_size=16)

    def run(seed: int) -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = reference.ConvNet()
        history = reference.train_minibatch(model, data, dataclasses.replace(recipe, seed=seed))
        return history, weights(model)

    (history, final), (again, final_again), (other, _) = run(0), run(0), run(1)
    assert len(history) == 2 and all(math.isfinite(loss) for loss in history)
    assert history == again
    assert all(torch.equal(final[name], final_again[name]) for name in final)
    assert other != history


def test_fast_forward_computes_the_tds_forward_and_its_gradients() -> None:
    """Does ``fast_forward`` give the TD's ``forward``'s outputs and weight gradients?"""
    torch.manual_seed(0)
    model = reference.ConvNet()
    x = torch.randn(16, 3, 32, 32)
    expected = model(x)
    expected.square().sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got = fast_forward(model.to(memory_format=torch.channels_last), x)
    got.square().sum().backward()
    assert torch.allclose(got, expected, atol=1e-5)
    for expected_grad, p in zip(expected_grads, model.parameters()):
        assert torch.allclose(p.grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_train_minibatch_leaves_a_model_the_tds_forward_runs() -> None:
    """Trained through ``fast_forward``, does the model end in the layout ``view`` needs?"""
    torch.manual_seed(0)
    model = reference.ConvNet()
    reference.train_minibatch(
        model, zdata_dataset(n=64), MiniBatchRecipe(n_epochs=1, batch_size=16)
    )
    assert all(p.is_contiguous() for p in model.parameters())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_predict_minibatch_averages_each_image_with_its_mirror() -> None:
    """Mirrored: argmax of the mean logits of an image and its mirror? Plain: ``predict``'s?"""
    torch.manual_seed(0)
    model = reference.ConvNet()
    data = zdata_dataset(n=40)
    x = torch.as_tensor(np.asarray(data["zdata"], dtype=np.float32))
    with torch.no_grad():
        expected = (model(x) + model(x.flip(3))).argmax(1)
    assert torch.equal(predict_minibatch(model, x, mirror_test=True, batch_size=16), expected)
    plain = predict_minibatch(model, x, mirror_test=False)
    assert np.array_equal(plain.numpy(), reference.predict(model, data))
    assert not torch.equal(expected, plain), "no image changes its class: the test shows nothing"
    assert model.training, "the caller's mode is restored"


def test_lookahead_moves_to_the_average_and_ends_on_it() -> None:
    """Does each lookahead step pull the weights to the average, and the last one end on it?"""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    lookahead = Lookahead(model, every=1, total_steps=2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(1)
    decay = 0.95**5 * 0.5**3
    assert model.weight.item() == pytest.approx(1 - decay)
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.after_step(2)  # decay 0.95**5 then the end: the weights become the average
    expected = (1 - decay) * 0.95**5 + 5.0 * (1 - 0.95**5)
    assert model.weight.item() == pytest.approx(expected)
    untouched = torch.nn.Linear(1, 1, bias=False)
    weight = untouched.weight.detach().clone()
    Lookahead(untouched, every=0, total_steps=1).after_step(1)
    assert torch.equal(untouched.weight, weight)


@pytest.fixture(scope="module")
def results() -> dict:
    if not RESULTS.is_file():
        pytest.fail(f"{RESULTS} is missing: run `make reference`")
    return json.loads(RESULTS.read_text())


def test_results_record_where_and_how_they_were_measured(results: dict) -> None:
    """Does results.json say which data, torch, threads and machine produced it, and when?"""
    assert {"source", "n_train", "n_test"} <= results["data"].keys()
    assert results["data"]["n_train"] == 50_000 and results["data"]["n_test"] == 10_000
    assert {"torch", "threads", "cpu_count", "platform"} <= results["environment"].keys()
    assert results["date"]
    for part in ("minibatch", "per_sample", "td_buggy_loop", "strongnet"):
        assert {
            "test_accuracy",
            "loss_history",
            "train_seconds",
            "curve_seconds_accuracy",
        } <= results[part].keys()
        assert {"date", "load_average_before_after"} <= results[part].keys()


def test_results_minibatch_recipe_reaches_70_percent_on_every_seed(results: dict) -> None:
    """Does the recorded recipe reach 70 % on every one of its 3 seeds?"""
    run = results["minibatch"]
    assert run["recipe"] == dataclasses.asdict(MiniBatchRecipe()), "stale: run `make reference`"
    assert len(run["loss_history"]) == run["recipe"]["n_epochs"]
    confusion = np.asarray(run["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == results["data"]["n_test"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(run["test_accuracy"], abs=1e-4)
    assert len(run["per_class_accuracy"]) == 10 and 0 <= run["train_accuracy"] <= 1
    assert run["summary"]["seeds"] == [0, 1, 2]
    assert run["summary"]["test_accuracy_min"] >= 0.70
    assert len(run["curve_seconds_accuracy"]) == run["recipe"]["n_epochs"]


def test_results_strongnet_reaches_85_percent_within_10_minutes(results: dict) -> None:
    """Does the stronger network, as recorded with today's recipe, reach 85 % in under 600 s?"""
    run = results["strongnet"]
    assert run["recipe"] == json.loads(json.dumps(dataclasses.asdict(StrongRecipe()))), (
        "stale: run `make reference`"
    )
    confusion = np.asarray(run["confusion_matrix"])
    assert confusion.sum() == results["data"]["n_test"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(run["test_accuracy"], abs=1e-4)
    assert run["test_accuracy"] >= 0.85 and run["summary"]["test_accuracy_min"] >= 0.85
    assert run["train_seconds"] < 600 and run["summary"]["train_seconds_max"] < 600


def test_results_whole_notebook_runs_in_5_minutes_and_reaches_60_percent(results: dict) -> None:
    """Did the TD with its solution and today's default parameters run in < 5 min and reach 60 %?"""
    run = results["notebook"]
    defaults = declared_parameters(read_source(SOURCE_NOTEBOOK))
    assert {k: v for k, v in run["parameters"].items() if k != "DATA_SOURCE"} == {
        k: v for k, v in defaults.items() if k != "DATA_SOURCE"
    }, "stale: the notebook's parameters changed since; run `make reference`"
    assert run["seconds"] < 300
    assert run["accuracies"]["minibatch"]["test"] >= 0.60


def test_results_contrast_the_td_loops(results: dict) -> None:
    """Fixed per-sample loop well above chance; the TD's loop without step at chance?"""
    assert results["per_sample"]["test_accuracy"] > 0.3
    assert results["td_buggy_loop"]["weights_unchanged"] is True
    assert results["td_buggy_loop"]["test_accuracy"] < 0.15
