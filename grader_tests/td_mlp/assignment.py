"""td_mlp, « Perceptron multicouche pour la classification d'images », as the engine sees it.

Its five check groups, the file its probe needs in the sandbox (``inputs.py``), the grading
profile (the notebook's ``parameters`` cell: a small CIFAR-10 folder, one short epoch), and the
two loss curves of its feedback page. Copied into the sandbox with the probe: it imports nothing
of the checks.

The CIFAR-10 folders are td_cnn's (``grader_tests/td_cnn/assignment.py``): both TDs of the course
read the same data, a synthetic set or a slice of a local copy, written once and shared. They
are imported where a profile is made, on the grader's side, never in the sandbox (td_cnn's files
are not copied there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tdkit.core.assignment import Assignment, CheckGroup, CurveFigure, GradingProfile

SYNTHETIC = "synthetic"  # td_cnn's name of the deterministic synthetic set


@dataclass(frozen=True)
class Parameters:
    """Overrides of the notebook's ``parameters`` cell for the untrusted run.

    The run shows that the notebook works end to end; the probe judges the functions on its own
    tensors (``inputs.py``), whatever these sizes.
    """

    DATA_SOURCE: str = SYNTHETIC  # or a local CIFAR-10 copy: the folder holds a slice of it
    TRAIN_SUBSET: int = 200
    VAL_SUBSET: int = 100
    TEST_SUBSET: int = 200
    N_EPOCHS: int = 1
    BATCH_SIZE: int = 64
    SEED: int = 0

    def profile(self) -> GradingProfile:
        from grader_tests.td_cnn.assignment import grading_folder

        folder = grading_folder(
            self.DATA_SOURCE,
            n_train=self.TRAIN_SUBSET
            + self.VAL_SUBSET,  # validation rows come from the train split
            n_test=self.TEST_SUBSET,
            seed=self.SEED,
        )
        return GradingProfile({**asdict(self), "DATA_SOURCE": str(folder)}, (folder,))


def profile(source: str | None) -> GradingProfile:
    """Grading runs on the synthetic set, or on a slice of the local copy ``source``."""
    return Parameters(DATA_SOURCE=source or SYNTHETIC).profile()


def release_profile() -> GradingProfile:
    """The solution, verified with its hidden checks in a few seconds."""
    return Parameters().profile()


def demo_source(root: Path, say: Callable[[str], None]) -> str | None:
    """td_cnn's demo data: the hub's CIFAR-10 (exported once for the offline sandbox),
    ``TDKIT_CIFAR10`` if set, else the synthetic set, saying which."""
    from grader_tests.td_cnn.assignment import demo_source as course_demo_source

    return course_demo_source(root, say)


ASSIGNMENT = Assignment(
    title="Perceptron multicouche pour la classification d'images",
    groups=(
        CheckGroup("normalize", "normalize", "normalisation"),
        CheckGroup("model", "MLP", "le réseau (MLP)"),
        CheckGroup("train_epochs", "train_epochs", "entraînement par mini-batchs"),
        CheckGroup("plot_losses", "plot_losses", "courbes d'apprentissage"),
        CheckGroup("evaluate", "evaluate", "exactitude"),
    ),
    sandbox=("inputs.py",),
    profile=profile,
    release_profile=release_profile,
    preload=("torch", "torch.nn.functional", "datasets", "PIL.Image", "matplotlib.pyplot"),
    figures=(
        CurveFigure(
            name="train_losses",
            heading="Perte d'entraînement",
            group="train_epochs",
            field="train_losses",
            caption="Perte d'entraînement par époque : votre `train_epochs` et la référence, avec le "
            "même réseau, les mêmes données et le même ordre des mini-batchs.",
            xlabel="époque",
            ylabel="perte moyenne des mini-batchs",
        ),
        CurveFigure(
            name="val_losses",
            heading="Perte de validation",
            group="train_epochs",
            field="val_losses",
            caption="Perte de validation après chaque époque : votre `train_epochs` et la référence, "
            "dans les mêmes conditions.",
            xlabel="époque",
            ylabel="entropie croisée sur la validation",
        ),
    ),
    demo_source=demo_source,
)
