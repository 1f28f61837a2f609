"""td_cnn, « CNN pour la classification d'images », as the engine sees it (``tdkit.core.assignment``).

Its seven check groups, the files its probe needs in the sandbox, the grading profile (the
notebook's ``parameters`` cell: a small CIFAR-10 folder, few epochs), and the two figures of its
feedback page. Copied into the sandbox with the probe: it imports nothing of the checks, and
``cifar`` (``datasets``) only to write a missing data folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tdkit.core.assignment import Assignment, CheckGroup, CurveFigure, GradingProfile, MatrixFigure
from tdkit.core.data_cache import cached_folder

SYNTHETIC = "synthetic"  # the data source name of the deterministic synthetic set
CIFAR10_ENV = "TDKIT_CIFAR10"  # a local CIFAR-10 copy standing in for the hub, said aloud
LOCAL_COPY = Path(".tdkit") / "cifar10"  # the hub's data, exported for the offline sandbox
CLASS_NAMES_FR = (
    "avion",
    "automobile",
    "oiseau",
    "chat",
    "cerf",
    "chien",
    "grenouille",
    "cheval",
    "bateau",
    "camion",
)


@dataclass(frozen=True)
class Parameters:
    """Overrides of the notebook's ``parameters`` cell for the untrusted run.

    The notebook reads its data as a student's does, ``datasets.load_dataset(DATA_SOURCE)``, from a
    folder written here (bound read-only in the sandbox).
    """

    DATA_SOURCE: str = SYNTHETIC  # or a local CIFAR-10 copy: the folder holds a slice of it
    TRAIN_SUBSET: int = 200
    TEST_SUBSET: int = 200
    N_EPOCHS: int = 1
    MINIBATCH_SUBSET: int = 200
    MINIBATCH_EPOCHS: int = 1
    SEED: int = 0

    def data_folder(self, cache: Path | None = None) -> Path:
        """The folder given to the notebook as ``DATA_SOURCE``, written on first use."""
        return grading_folder(
            self.DATA_SOURCE,
            n_train=max(self.TRAIN_SUBSET, self.MINIBATCH_SUBSET),
            n_test=self.TEST_SUBSET,
            seed=self.SEED,
            cache=cache,
        )

    def profile(self) -> GradingProfile:
        folder = self.data_folder()
        return GradingProfile({**asdict(self), "DATA_SOURCE": str(folder)}, (folder,))


def grading_folder(
    source: str | os.PathLike[str] = SYNTHETIC,
    *,
    n_train: int,
    n_test: int,
    seed: int = 0,
    cache: Path | None = None,
) -> Path:
    """A folder in the hub's layout with ``n_train`` + ``n_test`` images, written on first use.

    ``source`` is ``"synthetic"`` (images of ``cifar.synthetic_cifar10``, deterministic in ``seed``)
    or a local copy in the hub's layout, of which the first rows of each split are taken.
    """

    def write(folder: Path) -> Path:
        from .cifar import write_grading_folder  # datasets and pyarrow: only to write a folder

        return write_grading_folder(source, folder, n_train, n_test, seed)

    key = f"{n_train} {n_test} {seed}"
    if source == SYNTHETIC:
        return cached_folder(
            "cifar10-synthetic", key, [Path(__file__).with_name("cifar.py")], write, cache
        )
    origin = Path(source).expanduser().resolve()
    copies = sorted(origin.rglob("*.parquet"))  # a replaced copy gives a new slice
    return cached_folder("cifar10-slice", f"{key} {origin}", copies, write, cache)


def profile(source: str | None) -> GradingProfile:
    """Grading runs on the synthetic set, or on a slice of the local copy ``source``."""
    return Parameters(DATA_SOURCE=source or SYNTHETIC).profile()


def release_profile() -> GradingProfile:
    """Small enough to run the whole solution in well under a minute on 2 cores."""
    return Parameters(TRAIN_SUBSET=300, MINIBATCH_SUBSET=300, MINIBATCH_EPOCHS=2).profile()


def demo_source(root: Path, say: Callable[[str], None]) -> str | None:
    """The hub by default, ``TDKIT_CIFAR10`` if set, else (offline) the synthetic set, saying so."""
    local = os.environ.get(CIFAR10_ENV)
    if local:
        say(f"data: {local} ({CIFAR10_ENV})")
        return str(Path(local).resolve())
    copy = root / LOCAL_COPY
    if (copy / "plain_text").is_dir():
        say(f"data: the hub's CIFAR-10, from its local export {copy}")
        return str(copy)
    from tdkit.core.errors import TdkitError

    from .cifar import HUB_ID, load_cifar10, write_hub_layout

    try:
        hub = load_cifar10(HUB_ID)
    except TdkitError as error:
        say(
            f"data: the hub is out of reach and {CIFAR10_ENV} is not set, so the demo uses the "
            f"synthetic set ({error})"
        )
        return None
    # The sandbox has no network: export the hub's data once as a local parquet copy.
    write_hub_layout(hub, copy)
    say(f"data: {HUB_ID} (exported to {copy} for the offline sandbox)")
    return str(copy)


ASSIGNMENT = Assignment(
    title="CNN pour la classification d'images",
    groups=(
        CheckGroup("train", "train", "boucle d'entraînement"),
        CheckGroup("learning_curve", "plot_learning_curve", "courbe d'apprentissage"),
        CheckGroup("predict", "predict", "prédictions"),
        CheckGroup("accuracy", "accuracy", "exactitude"),
        CheckGroup("confusion_matrix", "confusion_matrix", "matrice de confusion"),
        CheckGroup("per_class_accuracy", "per_class_accuracy", "exactitude par classe"),
        CheckGroup("activation_maps", "activation_maps", "cartes d'activation"),
    ),
    sandbox=("inputs.py", "cifar.py"),
    profile=profile,
    release_profile=release_profile,
    preload=(
        "torch",
        "torch.nn.functional",
        "datasets",
        "polars",
        "PIL.Image",
        "matplotlib.pyplot",
    ),
    figures=(
        CurveFigure(
            name="loss_history",
            heading="Courbe d'apprentissage",
            group="train",
            field="loss_history",
            caption="Perte moyenne par époque : votre `train` et la référence, sur les mêmes données "
            "avec les mêmes poids initiaux.",
            xlabel="époque",
            ylabel="perte moyenne",
        ),
        MatrixFigure(
            name="confusion",
            heading="Matrices de confusion",
            group="confusion_matrix",
            arrays=("written", "alone"),
            shape=(10, 10),
            reference_caption="Référence, sur les mêmes images",
            xlabel="classe prédite",
            ylabel="classe réelle",
            ticks=CLASS_NAMES_FR,
        ),
    ),
    demo_source=demo_source,
)
