"""Time tdkit's data preparation against the TD's per-row ``map``, on the offline CIFAR-10 copy.

Ours: load, decode every image once, z-score per channel with train statistics, build the
``zdata`` datasets, for all 60 000 images. The TD's: statistics from every decoded image in
float64, then ``with_format("numpy").map(...)`` one row at a time, measured on a subset
(into a temporary cache) and extrapolated. Usage: ``python bench/data_prep.py [SUBSET]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import datasets
import numpy as np
import pyarrow as pa

from grader_tests.td_cnn import cifar as data
from grader_tests.td_cnn.assignment import CIFAR10_ENV

T = TypeVar("T")
DEFAULT_SUBSET = 2000


def timed(label: str, action: Callable[[], T], timings: dict[str, float]) -> T:
    start = time.perf_counter()
    result = action()
    timings[label] = time.perf_counter() - start
    print(f"  {label:<38} {timings[label]:7.2f} s", flush=True)
    return result


def cifar10_dir() -> Path:
    path = Path(
        os.environ.get(CIFAR10_ENV) or Path(__file__).resolve().parents[2] / "shared" / "cifar10"
    )
    if not path.is_dir():
        sys.exit(
            f"No CIFAR-10 copy at {path}: set {CIFAR10_ENV}=/path/to/cifar10 (hub parquet layout)."
        )
    return path


def float64_rows(column: pa.ChunkedArray, n: int) -> np.ndarray:
    """The TD's stored zdata (nested lists of float64) as one (n, C, W, H) array, unrounded."""
    values = column.combine_chunks()
    for _ in range(3):
        values = values.flatten()
    return values.to_numpy().reshape(n, data.CHANNELS, data.SIDE, data.SIDE)


def main() -> None:
    subset = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SUBSET
    path = cifar10_dir()
    datasets.disable_progress_bars()  # the map's bar would bury the figures
    print(
        f"CIFAR-10 copy: {path}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )

    print("tdkit.core.data, all images:")
    ours: dict[str, float] = {}
    dsd = timed("load_cifar10", lambda: data.load_cifar10(path), ours)
    train_u8 = timed("decode_images train", lambda: data.decode_images(dsd["train"]), ours)
    test_u8 = timed("decode_images test", lambda: data.decode_images(dsd["test"]), ours)
    mean, std = timed("channel_stats (train)", lambda: data.channel_stats(train_u8), ours)
    x_train = timed("zscore_chw train", lambda: data.zscore_chw(train_u8, mean, std), ours)
    x_test = timed("zscore_chw test", lambda: data.zscore_chw(test_u8, mean, std), ours)
    y_train, y_test = np.asarray(dsd["train"]["label"][:]), np.asarray(dsd["test"]["label"][:])
    timed("to_zdata_dataset train", lambda: data.to_zdata_dataset(x_train, y_train), ours)
    timed("to_zdata_dataset test", lambda: data.to_zdata_dataset(x_test, y_test), ours)
    n_images = len(x_train) + len(x_test)
    ours_total = sum(ours.values())
    print(f"  {'total for ' + str(n_images) + ' images':<38} {ours_total:7.2f} s")

    print(f"The TD's way, on {subset} train rows, extrapolated:")
    td: dict[str, float] = {}
    rows = dsd["train"].select(range(subset))  # z-scored below with our statistics, to compare

    def td_stats() -> tuple[np.ndarray, np.ndarray]:
        imgs = rows.with_format("numpy")["img"]
        pixels = np.concatenate([t for t in imgs]).astype(np.float64).reshape((-1, 3))
        means = np.mean(pixels, axis=0)
        return means, np.std(pixels, axis=0, mean=means.reshape((1, -1)))

    timed("statistics (float64 copy)", td_stats, td)
    with tempfile.TemporaryDirectory() as cache:
        cache_file = Path(cache) / "td_map.arrow"
        mapped = timed(
            "map z-score per row",
            lambda: rows.with_format("numpy").map(
                lambda row: {"zdata": np.transpose((row["img"] - mean) / std, axes=(2, 1, 0))},
                cache_file_name=str(cache_file),
            ),
            td,
        )
        cache_bytes = sum(f.stat().st_size for f in Path(cache).iterdir())
        td_zdata = float64_rows(mapped.with_format("arrow")[:].column("zdata"), subset)
    td_chw = td_zdata.transpose(0, 1, 3, 2)  # the TD's (C, W, H) back to (C, H, W)
    gap = float(np.abs(td_chw - x_train[:subset]).max())
    same = np.array_equal(td_chw.astype(np.float32), x_train[:subset])
    td_total = td["statistics (float64 copy)"] * len(x_train) / subset
    td_total += td["map z-score per row"] * n_images / subset
    td_cache = cache_bytes * n_images / subset
    td_all = td_total + ours["load_cifar10"]  # loading is the same for both
    print(f"  {'total for ' + str(n_images) + ' images (extrap.)':<38} {td_all:7.2f} s")

    print("Summary:")
    print(
        f"  tdkit.core.data  {ours_total:7.2f} s, 0 bytes of extra cache on disk "
        f"(arrays in memory: {(x_train.nbytes + x_test.nbytes) / 1e9:.2f} GB float32)"
    )
    print(
        f"  TD's map    {td_all:7.2f} s, {td_cache / 1e9:.2f} GB of extra cache on disk (float64)"
    )
    print(f"  speed-up    x{td_all / ours_total:.1f}")
    print(
        f"  same values on {subset} rows: ours == TD's float64 z-scores rounded to float32: {same}"
        f" (max |difference| {gap:.1e})"
    )


if __name__ == "__main__":
    main()
