"""tdkit.core.data: every CIFAR-10 source looks the same, fails loudly, and prepares fast and right."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from grader_tests.td_cnn import cifar as data
from grader_tests.td_cnn.assignment import CIFAR10_ENV, SYNTHETIC, grading_folder
from grader_tests.td_cnn.inputs import GradingData, GradingInputs
from tdkit.core.errors import TdkitError


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face caches in a fresh folder: a copy cached on this machine cannot answer."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv(CIFAR10_ENV, raising=False)


@pytest.fixture
def local_copy(tmp_path: Path) -> Path:
    """A small directory in the hub's parquet layout, made from synthetic images."""
    root = tmp_path / "cifar10"
    for name, split in data.synthetic_cifar10(n_train=30, n_test=20, seed=3).items():
        split.to_parquet(str(root / "plain_text" / f"{name}-00000-of-00001.parquet"))
    return root


def _pixels(split: datasets.Dataset) -> list[bytes]:
    return [image.tobytes() for image in split["img"]]


def test_synthetic_is_deterministic() -> None:
    """Does the same seed give byte-identical images and labels, and another seed other ones?"""
    first = data.synthetic_cifar10(n_train=40, n_test=20, seed=7)
    again = data.synthetic_cifar10(n_train=40, n_test=20, seed=7)
    other = data.synthetic_cifar10(n_train=40, n_test=20, seed=8)
    for name in data.SPLITS:
        assert first[name].data.equals(again[name].data)
        assert _pixels(first[name]) != _pixels(other[name])
    assert sorted(np.bincount(first["train"]["label"][:], minlength=10)) == [4] * 10  # balanced


def test_synthetic_has_the_cifar10_shape() -> None:
    """Has synthetic data the splits, features, image size and mode that the hub promises?"""
    dsd = data.load_cifar10(SYNTHETIC, n_train=12, n_test=5, seed=0)
    assert {name: split.num_rows for name, split in dsd.items()} == {"train": 12, "test": 5}
    assert dsd["train"].features == data.FEATURES
    assert dsd["train"].features["label"].names == list(data.CLASS_NAMES)
    image = dsd["test"][0]["img"]
    assert (image.mode, image.size) == ("RGB", (32, 32))


def test_synthetic_matches_the_real_copy(real_cifar10: Path) -> None:
    """Are synthetic and real CIFAR-10 interchangeable: same split names, features, images?"""
    real = data.load_cifar10(real_cifar10)
    synthetic = data.synthetic_cifar10(n_train=10, n_test=10)
    assert list(real) == list(synthetic)
    for name in data.SPLITS:
        assert real[name].features == synthetic[name].features
        real_image, synthetic_image = real[name][0]["img"], synthetic[name][0]["img"]
        assert (real_image.mode, real_image.size) == (synthetic_image.mode, synthetic_image.size)
    assert (real["train"].num_rows, real["test"].num_rows) == (50_000, 10_000)


def test_offline_hub_fails_fast_and_names_the_fixes(
    empty_hf_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HF_HUB_OFFLINE=1, does loading the hub fail within seconds, saying what to do?"""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TdkitError) as error:
        data.load_cifar10()
    assert time.perf_counter() - start < 5
    assert "TDKIT_CIFAR10=/path/to/cifar10" in str(error.value)
    assert '"synthetic"' in str(error.value)


def test_unreachable_hub_fails_fast(empty_hf_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without offline mode, does an unreachable hub fail within seconds instead of retrying?"""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port
    start = time.perf_counter()
    with pytest.raises(TdkitError, match="TDKIT_CIFAR10=/path/to/cifar10"):
        data.load_cifar10(data.HUB_ID)
    assert time.perf_counter() - start < 10


def test_env_var_redirects_the_hub_and_says_so(
    local_copy: Path,
    empty_hf_cache: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With TDKIT_CIFAR10 set, is that directory loaded instead of the hub, and is it said?"""
    monkeypatch.setenv(CIFAR10_ENV, str(local_copy))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub must not be what answers
    dsd = data.load_cifar10()
    assert (dsd["train"].num_rows, dsd["test"].num_rows) == (30, 20)
    assert dsd["train"].features == data.FEATURES
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1
    assert CIFAR10_ENV in printed[0] and str(local_copy) in printed[0]


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """Does a source that is neither the hub, a directory nor "synthetic" name what to pass?"""
    with pytest.raises(TdkitError, match="No CIFAR-10 directory") as error:
        data.load_cifar10(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    assert '"synthetic"' in str(error.value)


def test_directory_with_other_data_is_refused(tmp_path: Path, empty_hf_cache: None) -> None:
    """Does a parquet directory that is not CIFAR-10 give an error rather than odd columns later?"""
    other = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    for name in data.SPLITS:
        other.to_parquet(str(tmp_path / "other" / f"{name}.parquet"))
    with pytest.raises(TdkitError, match="not CIFAR-10"):
        data.load_cifar10(tmp_path / "other")


def test_decode_images_follows_row_selection() -> None:
    """Does decode_images give each selected row's own pixels, in the selected order?"""
    split = data.synthetic_cifar10(n_train=20, n_test=0, seed=1)["train"].select([9, 2, 17])
    decoded = data.decode_images(split)
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 32, 32, 3)
    for got, image in zip(decoded, split["img"]):
        np.testing.assert_array_equal(got, np.asarray(image))


def test_decode_images_matches_pil_on_real_jpegs(real_cifar10: Path) -> None:
    """On the real (JPEG) copy, is the fast decode pixel-identical to decoding row by row?"""
    split = data.load_cifar10(real_cifar10)["test"].select(range(50))
    decoded = data.decode_images(split)
    np.testing.assert_array_equal(decoded, np.stack([np.asarray(image) for image in split["img"]]))


def _dataset_of(images: np.ndarray, labels: list[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"img": list(images), "label": labels}, features=data.FEATURES
    )


def test_prepare_lays_out_channels_rows_columns() -> None:
    """Is zdata[c, h, w] the z-score of img[h, w, c] (not the TD's transposed (C, W, H))?"""
    h, w, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    image = ((h * 7 + w * 2 + c * 60) % 256).astype(np.uint8)
    assert not np.array_equal(image, image.transpose(1, 0, 2))  # a transpose would show
    images = np.stack([image, 255 - image])
    dsd = datasets.DatasetDict(
        {"train": _dataset_of(images, [3, 5]), "test": _dataset_of(images[:1], [3])}
    )
    prepared = data.prepare(dsd)
    assert prepared.x_train.shape == (2, 3, 32, 32) and prepared.x_train.dtype == np.float32
    assert prepared.x_train.flags.c_contiguous
    mean = images.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    std = images.reshape(-1, 3).std(axis=0, dtype=np.float64)
    np.testing.assert_allclose(prepared.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(prepared.std, std, rtol=1e-12)
    expected = ((image - mean) / std).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(prepared.x_test[0], expected)
    np.testing.assert_array_equal(prepared.y_train, [3, 5])
    assert prepared.y_train.dtype == np.int64


def test_test_split_uses_train_statistics() -> None:
    """Is the test split normalised with the train mean and std, not its own?"""
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 100, (4, 32, 32, 3), dtype=np.uint8)
    bright = rng.integers(150, 256, (4, 32, 32, 3), dtype=np.uint8)
    dsd = datasets.DatasetDict(
        {"train": _dataset_of(dark, [0] * 4), "test": _dataset_of(bright, [1] * 4)}
    )
    prepared = data.prepare(dsd)
    np.testing.assert_allclose(prepared.mean, dark.reshape(-1, 3).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(prepared.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.all(prepared.x_test.mean(axis=(0, 2, 3)) > 2)  # bright, measured on the dark scale


def test_grading_inputs_are_the_synthetic_dataset_prepared() -> None:
    """Are the probe's and the checks' inputs, built from arrays, exactly the synthetic dataset's
    images (PNG-encoded, then decoded) prepared as the TD prepares them?"""
    inputs = GradingInputs(seed=11, train_samples=5, eval_samples=9)
    x, y = GradingData(inputs)._prepared
    prepared = data.prepare(data.load_cifar10(SYNTHETIC, n_train=20, n_test=18, seed=11))
    assert np.array_equal(x, np.concatenate([prepared.x_train, prepared.x_test]))
    assert np.array_equal(y, np.concatenate([prepared.y_train, prepared.y_test]))
    assert x.dtype == np.float32 and y.dtype == np.int64


def test_zdata_dataset_round_trips() -> None:
    """Does to_zdata_dataset give back the exact arrays, as torch rows and as one numpy batch?"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 7)
    ds = data.to_zdata_dataset(x, y)
    assert ds.features["label"].names == list(data.CLASS_NAMES)
    batch = ds.with_format("numpy")[:]
    np.testing.assert_array_equal(batch["zdata"], x)
    np.testing.assert_array_equal(batch["label"], y)
    row = ds.with_format("torch")[3]
    assert row["zdata"].dtype == torch.float32 and row["zdata"].shape == (3, 32, 32)
    assert torch.equal(row["zdata"], torch.from_numpy(x[3])) and int(row["label"]) == y[3]
    with pytest.raises(TdkitError, match="axes=\\(0, 3, 1, 2\\)"):
        data.to_zdata_dataset(x.transpose(0, 2, 3, 1), y)  # (N, H, W, C) by mistake


def _td_buggy_train(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset: datasets.Dataset
) -> None:
    # The TD's loop as taught: backward then zero_grad, and never step.
    for row in dataset.with_format("torch"):
        loss = F.cross_entropy(model(row["zdata"].unsqueeze(0)), row["label"].reshape(1))
        loss.backward()
        optimizer.zero_grad()


def test_synthetic_data_tells_a_correct_loop_from_the_td_bug() -> None:
    """After one epoch on 400 synthetic images, does a correct loop beat chance and the TD's not?"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one image per step: threads only add overhead
    try:
        train, test = data.prepared_datasets(
            data.synthetic_cifar10(n_train=400, n_test=500, seed=0)
        )
        accuracies = {}
        for name in ("correct", "buggy"):
            torch.manual_seed(0)
            model = reference.ConvNet()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            if name == "correct":
                reference.train(model, optimizer, train, n_epochs=1)
            else:
                _td_buggy_train(model, optimizer, train)
            accuracies[name] = reference.accuracy(model, test)
    finally:
        torch.set_num_threads(threads)
    assert accuracies["correct"] >= 0.4, accuracies
    assert accuracies["buggy"] <= 0.2, accuracies


def test_grading_folder_is_read_by_load_dataset_as_it_is(tmp_path: Path) -> None:
    """Does `datasets.load_dataset(folder)` read tdkit's synthetic folder as CIFAR-10 from the hub
    (same splits, features, images), and does a second call reuse it untouched?"""
    folder = grading_folder(n_train=12, n_test=7, seed=5, cache=tmp_path)
    loaded = datasets.load_dataset(str(folder))
    expected = data.synthetic_cifar10(n_train=12, n_test=7, seed=5)
    for name in data.SPLITS:
        assert loaded[name].features == data.FEATURES
        assert _pixels(loaded[name]) == _pixels(expected[name])
    assert data._checked(loaded, str(folder)) is loaded
    stamp = data.parquet_path(folder, "train").stat().st_mtime_ns
    assert grading_folder(n_train=12, n_test=7, seed=5, cache=tmp_path) == folder
    assert data.parquet_path(folder, "train").stat().st_mtime_ns == stamp
    assert grading_folder(n_train=12, n_test=7, seed=6, cache=tmp_path) != folder
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left


def test_grading_folder_slices_a_local_copy(local_copy: Path, tmp_path: Path) -> None:
    """From a local copy, does the folder hold the first rows of each split, readable as they were?"""
    folder = grading_folder(local_copy, n_train=9, n_test=4, cache=tmp_path)
    sliced, full = datasets.load_dataset(str(folder)), data.load_cifar10(local_copy)
    assert (sliced["train"].num_rows, sliced["test"].num_rows) == (9, 4)
    assert _pixels(sliced["train"]) == _pixels(full["train"].select(range(9)))
    assert sliced["test"]["label"] == full["test"]["label"][:4]
