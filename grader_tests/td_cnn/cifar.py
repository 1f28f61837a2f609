"""CIFAR-10 for td_cnn: load it (hub, local copy or synthetic) and turn it into tensors fast.

Every source gives the same ``DatasetDict``: splits ``train`` and ``test``, columns ``img``
(32x32 RGB images) and ``label`` (``ClassLabel`` with ``CLASS_NAMES``). No source ever stands
in for another without saying so.

The student's notebook does not import tdkit: it reads ``datasets.load_dataset(DATA_SOURCE)``.
For grading and ``tdkit check``, ``assignment.grading_folder`` has small data (synthetic,
or a slice of a local copy) written here as a folder in the hub's parquet layout, which
``load_dataset`` reads as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import datasets
import huggingface_hub.constants
import numpy as np
import PIL.Image
import pyarrow as pa

from tdkit.core.errors import TdkitError

from .assignment import CIFAR10_ENV, SYNTHETIC

HUB_ID = "uoft-cs/cifar10"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SIDE = 32
CHANNELS = 3
FEATURES = datasets.Features(
    {"img": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))}
)
ZDATA_FEATURES = datasets.Features(
    {
        "zdata": datasets.Array3D(shape=(CHANNELS, SIDE, SIDE), dtype="float32"),
        "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
    }
)
SPLITS = ("train", "test")
CONFIG = "plain_text"  # the hub's config folder: <folder>/plain_text/<split>-00000-of-00001.parquet
HUB_TIMEOUT_S = 5.0  # one probe instead of huggingface_hub's ~25 s of retries when offline
CHUNK = 4096  # images per step of the array loops: keeps index temporaries near 30 MB
_TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub spells a true environment flag

_DIR_HINT = (
    "pass a directory in the hub's parquet layout (plain_text/train-*.parquet, "
    f'plain_text/test-*.parquet), "{HUB_ID}" or "{SYNTHETIC}"'
)
_OFFLINE_HINT = (
    f"set {CIFAR10_ENV}=/path/to/cifar10 (a local copy in the hub's parquet layout) or pass "
    f'source="{SYNTHETIC}" for artificial CIFAR-shaped images'
)


def load_cifar10(
    source: str | os.PathLike[str] = HUB_ID,
    *,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
) -> datasets.DatasetDict:
    """CIFAR-10 from the hub (default), a local parquet copy, or ``"synthetic"``.

    With the default source and ``TDKIT_CIFAR10`` set, that directory is loaded instead and
    a line says so. ``n_train``, ``n_test`` and ``seed`` only apply to ``"synthetic"``.
    """
    if source == SYNTHETIC:
        return synthetic_cifar10(n_train, n_test, seed)
    if source != HUB_ID:
        return _load_dir(Path(source), "")
    redirect = os.environ.get(CIFAR10_ENV)
    if not redirect:
        return _checked(_load_hub(), HUB_ID)
    print(f"tdkit: {CIFAR10_ENV} is set: loading CIFAR-10 from {redirect}, not from the hub")
    return _load_dir(Path(redirect), f" ({CIFAR10_ENV} names it: fix or unset it)")


def _load_dir(path: Path, hint: str) -> datasets.DatasetDict:
    path = path.expanduser()
    if not path.is_dir():
        raise TdkitError(f"No CIFAR-10 directory at {path}: {_DIR_HINT}{hint}.")
    try:
        dsd = datasets.load_dataset(str(path))
    except FileNotFoundError as exc:  # a directory without data files
        raise TdkitError(f"No CIFAR-10 data in {path} ({exc}): {_DIR_HINT}{hint}.") from exc
    return _checked(dsd, str(path))


def _load_hub() -> datasets.DatasetDict:
    # Offline, asked for or forced by an unreachable hub, only the local Hugging Face cache is read.
    if _hub_offline_requested():
        offline = "HF_HUB_OFFLINE is set"
    elif not _hub_reachable():
        offline = f"{huggingface_hub.constants.ENDPOINT} is unreachable"
    else:
        offline = ""
    try:
        with _hf_offline(bool(offline)):
            return datasets.load_dataset(HUB_ID)
    except OSError as exc:  # ConnectionError when offline, FileNotFoundError when not cached
        raise TdkitError(
            f"Cannot load {HUB_ID} from the Hugging Face hub ({offline or 'download failed'}; "
            f"{exc}). To work offline, {_OFFLINE_HINT}."
        ) from exc


def _hub_offline_requested() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE at import; honour it when set later too.
    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    return flag or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _hub_reachable() -> bool:
    request = urllib.request.Request(huggingface_hub.constants.ENDPOINT, method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return True  # the server answered, even if with an error status
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hf_offline(offline: bool) -> Iterator[None]:
    # Both libraries freeze their offline flag at import: switch it for this one call.
    if not offline:
        yield
        return
    saved = huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def _checked(dsd: datasets.DatasetDict, origin: str) -> datasets.DatasetDict:
    for name in SPLITS:
        if name not in dsd or dsd[name].features != FEATURES:
            found = {split: dict(dsd[split].features) for split in dsd}
            raise TdkitError(
                f"{origin} is not CIFAR-10 as on the hub: expected splits {SPLITS} with features "
                f"{dict(FEATURES)}, found {found}. Point the source at a copy of {HUB_ID}."
            )
    return dsd


def synthetic_cifar10(
    n_train: int = 5000, n_test: int = 1000, seed: int = 0
) -> datasets.DatasetDict:
    """Artificial CIFAR-shaped images, deterministic in ``seed``, that a small CNN can learn.

    Each class has its own colour (ten points far apart in RGB) and stripe orientation, drawn
    as a blob at a random place; strong per-pixel noise makes one pixel a weak clue, while the
    colour averaged over a region (what convolution and pooling compute) is a strong one.
    """
    splits = {}
    for name, (images, labels) in synthetic_arrays(n_train, n_test, seed).items():
        splits[name] = datasets.Dataset.from_dict(
            {"img": [{"bytes": _png(image), "path": None} for image in images], "label": labels},
            features=FEATURES,
            split=datasets.NamedSplit(name),
        )
    return datasets.DatasetDict(splits)


def synthetic_arrays(
    n_train: int, n_test: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The images (N, H, W, C) uint8 and labels of ``synthetic_cifar10``, without the PNG round trip
    (PNG is lossless: decoding its images gives these arrays back)."""
    if n_train < 0 or n_test < 0:
        raise TdkitError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}.")
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))  # test does not depend on n_train
    return {
        name: _synthetic_arrays(n, np.random.default_rng(stream))
        for name, n, stream in zip(SPLITS, (n_train, n_test), streams)
    }


# Eight corners of an RGB cube and two face centres: class colours far apart from each other.
_LOW, _MID, _HIGH = 50.0, 128.0, 205.0
_PALETTE = np.array(
    [[r, g, b] for r in (_LOW, _HIGH) for g in (_LOW, _HIGH) for b in (_LOW, _HIGH)]
    + [[_MID, _MID, _HIGH], [_MID, _MID, _LOW]],
    dtype=np.float32,
)
_COLOUR_JITTER = 5.0  # per image: classes stay apart
_PIXEL_NOISE = 60.0  # per pixel: one pixel is a weak clue, a 5x5 average a strong one
_STRIPE_AMPLITUDE = 40.0
_STRIPE_FREQUENCY = 1.2  # radians per pixel across the stripes
_PATCH_SIGMA = 6.0  # pixels: size of the striped blob


def _synthetic_arrays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))  # balanced, shuffled
    colour = _PALETTE[labels] + _COLOUR_JITTER * rng.standard_normal(
        (n, CHANNELS), dtype=np.float32
    )
    angle = labels * (np.pi / len(CLASS_NAMES))  # one stripe orientation per class
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1, 1))
    centre = rng.uniform(SIDE / 4, 3 * SIDE / 4, (n, 2, 1, 1))
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    dr, dc = rows - centre[:, 0], cols - centre[:, 1]
    across = dr * np.cos(angle)[:, None, None] + dc * np.sin(angle)[:, None, None]
    blob = np.exp(-(dr**2 + dc**2) / (2 * _PATCH_SIGMA**2))
    pattern = (_STRIPE_AMPLITUDE * blob * np.sin(_STRIPE_FREQUENCY * across + phase)).astype(
        np.float32
    )
    images = colour[:, None, None, :] + pattern[..., None]
    images += _PIXEL_NOISE * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Noisy pixels do not deflate: storing them uncompressed is as small and twice as fast.
    PIL.Image.fromarray(image).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def decode_images(split: datasets.Dataset) -> np.ndarray:
    """All images of a split as one uint8 array (N, 32, 32, 3), each decoded exactly once."""
    if not isinstance(split.features.get("img"), datasets.Image):
        raise TdkitError(f"The split has no image column 'img' (columns: {split.column_names}).")
    # The arrow view skips building a PIL image per row through the formatter.
    column = split.with_format("arrow")[:].column("img").combine_chunks()
    blobs = column.field("bytes").to_pylist()
    paths = column.field("path").to_pylist()
    images = np.empty((len(blobs), SIDE, SIDE, CHANNELS), dtype=np.uint8)
    flat = images.reshape(len(blobs), SIDE * SIDE * CHANNELS)  # a view, filled row by row
    for i, (blob, path) in enumerate(zip(blobs, paths)):
        with PIL.Image.open(io.BytesIO(blob) if blob is not None else path) as image:
            if image.size != (SIDE, SIDE):
                raise TdkitError(f"Image {i} is {image.size}, not {SIDE}x{SIDE}: not CIFAR-10.")
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            flat[i] = np.frombuffer(rgb.tobytes(), dtype=np.uint8)
    return images


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is elementwise, not a bool
class Prepared:
    """Both splits as arrays ready for ``Conv2d``: x float32 (N, C, H, W), y int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray  # per channel, train split, 0-255 scale
    std: np.ndarray


def prepare(dsd: datasets.DatasetDict) -> Prepared:
    """Z-score each channel with the train statistics and lay images out as (N, C, H, W)."""
    return prepare_arrays(
        (decode_images(dsd["train"]), _labels(dsd["train"])),
        (decode_images(dsd["test"]), _labels(dsd["test"])),
    )


def prepare_arrays(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Prepared:
    """``prepare`` of splits already decoded: (images (N, H, W, C) uint8, labels) each."""
    mean, std = channel_stats(train[0])
    return Prepared(
        x_train=zscore_chw(train[0], mean, std),
        y_train=np.asarray(train[1], dtype=np.int64),
        x_test=zscore_chw(test[0], mean, std),
        y_test=np.asarray(test[1], dtype=np.int64),
        mean=mean,
        std=std,
    )


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std (population) of uint8 images (N, H, W, C), in float64."""
    if images.size == 0:
        raise TdkitError("No training images: the z-score statistics need at least one.")
    # Counting the 256 possible values is exact and avoids a float64 copy of every pixel.
    counts = np.zeros((CHANNELS, 256), dtype=np.int64)
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        for c in range(CHANNELS):
            counts[c] += np.bincount(chunk[..., c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1)
    mean = counts @ values / total
    std = np.sqrt((counts * (values - mean[:, None]) ** 2).sum(axis=1) / total)
    return mean, std


def zscore_chw(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32, ``(x - mean) / std`` per channel."""
    if np.any(std == 0):
        raise TdkitError(f"A channel has zero standard deviation ({std}): cannot z-score it.")
    # A 256-entry table per channel: float64 arithmetic rounded once to float32, no big temporary.
    tables = ((np.arange(256.0) - mean[:, None]) / std[:, None]).astype(np.float32)
    out = np.empty((len(images), CHANNELS, SIDE, SIDE), dtype=np.float32)
    for start in range(0, len(images), CHUNK):
        chunk, out_chunk = images[start : start + CHUNK], out[start : start + CHUNK]
        for c in range(CHANNELS):
            out_chunk[:, c] = tables[c][chunk[..., c]]
    return out


def _labels(split: datasets.Dataset) -> np.ndarray:
    return cast(
        np.ndarray, split.with_format("arrow")[:].column("label").to_numpy().astype(np.int64)
    )


def to_zdata_dataset(x: np.ndarray, y: np.ndarray) -> datasets.Dataset:
    """A ``Dataset`` with ``zdata`` (float32 (3, 32, 32)) and ``label``, built without copying rows.

    Rows come back as (3, 32, 32) tensors with ``with_format("torch")`` and the whole column
    as one (N, 3, 32, 32) array with ``with_format("numpy")[:]``. A contiguous float32 ``x`` is
    shared, not copied: do not modify it afterwards.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[1:] != (CHANNELS, SIDE, SIDE) or y.shape != (len(x),):
        raise TdkitError(
            f"Expected x of shape (N, {CHANNELS}, {SIDE}, {SIDE}) and y of shape (N,), got "
            f"{x.shape} and {y.shape}: transpose images with axes=(0, 3, 1, 2) first."
        )
    if not np.issubdtype(y.dtype, np.integer) or np.any((y < 0) | (y >= len(CLASS_NAMES))):
        raise TdkitError(
            f"Labels must be integers 0-{len(CLASS_NAMES) - 1}, "
            f"got {y.dtype} from {y.min()} to {y.max()}."
        )
    # Array3D stores nested lists: wrap the flat float32 buffer in three levels of offsets.
    storage: pa.Array = pa.array(x.reshape(-1))
    n_lists = x.size
    for size in (SIDE, SIDE, CHANNELS):
        n_lists //= size
        offsets = pa.array(np.arange(n_lists + 1, dtype=np.int32) * size)
        storage = pa.ListArray.from_arrays(offsets, storage)
    zdata_type = ZDATA_FEATURES["zdata"]()  # Array3D called returns its arrow extension type
    table = pa.table(
        {
            "zdata": pa.ExtensionArray.from_storage(zdata_type, storage),
            "label": pa.array(y.astype(np.int64)),
        }
    )
    # Fingerprinting would pickle the whole table; hashing the raw buffers is ~20x faster.
    digest = hashlib.sha256(x.data)
    digest.update(y.astype(np.int64).data)
    return datasets.Dataset(
        table,
        info=datasets.DatasetInfo(features=ZDATA_FEATURES),
        fingerprint=digest.hexdigest()[:16],
    )


def prepared_datasets(dsd: datasets.DatasetDict) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(train, test)`` zdata datasets of ``dsd``: ``prepare`` then ``to_zdata_dataset``."""
    prepared = prepare(dsd)
    return (
        to_zdata_dataset(prepared.x_train, prepared.y_train),
        to_zdata_dataset(prepared.x_test, prepared.y_test),
    )


# ---------------------------------------------------------------- folders in the hub's layout


def parquet_path(folder: Path, split: str) -> Path:
    """Where the hub's layout keeps ``split`` of CIFAR-10 under ``folder``."""
    return folder / CONFIG / f"{split}-00000-of-00001.parquet"


def write_hub_layout(dsd: datasets.DatasetDict, folder: Path) -> Path:
    """Write ``dsd`` under ``folder`` as the hub lays out CIFAR-10; ``load_dataset(folder)`` reads it.

    Written in a scratch folder beside it, then renamed: a folder that exists is complete. Files
    are world-readable: the sandbox reads them as a user of its own.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    # datasets draws a progress bar per split: noise in the instructor's `make demo` and grading.
    quiet = not datasets.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        for split in SPLITS:
            dsd[split].to_parquet(str(parquet_path(scratch, split)))
        for path in (scratch, scratch / CONFIG, *scratch.rglob("*.parquet")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            scratch.rename(folder)
        except OSError:
            if not folder.is_dir():  # not a concurrent writer that got there first
                raise
    finally:
        if quiet:
            datasets.enable_progress_bars()
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def write_grading_folder(
    source: str | os.PathLike[str], folder: Path, n_train: int, n_test: int, seed: int
) -> Path:
    """Write ``folder`` for ``assignment.grading_folder``: its first ``n_train`` + ``n_test``
    images, synthetic or taken from the local copy ``source``."""
    if source == SYNTHETIC:
        dsd = synthetic_cifar10(n_train, n_test, seed)
    else:
        full = load_cifar10(source)
        dsd = datasets.DatasetDict(
            {
                split: full[split].select(range(min(n, full[split].num_rows)))
                for split, n in zip(SPLITS, (n_train, n_test))
            }
        )
    return write_hub_layout(dsd, folder)
