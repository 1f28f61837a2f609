"""Does the stronger Bricolage network (``reference/strongnet.py``) do what its recipe says?

Small widths and the synthetic set, so the file runs in seconds; the recorded figures on the
real CIFAR-10 are checked against ``reference/results.json`` in ``test_reference.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grader_tests.td_cnn.cifar import load_cifar10, prepare
from reference.strongnet import (
    StrongNet,
    StrongRecipe,
    _translate,
    predict_strongnet,
    train_strongnet,
)

# float32: on a CPU without native bfloat16 (AVX2 only) autocast is several times slower; the
# bfloat16 path is trained in the fractional-epoch test.
TINY = StrongRecipe(widths=(8, 16, 16), n_epochs=3, batch_size=64, tta_level=0, bfloat16=False)


@pytest.fixture(scope="module")
def synthetic() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = prepare(load_cifar10("synthetic", n_train=512, n_test=256, seed=0))
    return (
        torch.as_tensor(data.x_train),
        torch.as_tensor(data.y_train, dtype=torch.int64),
        torch.as_tensor(data.x_test),
        torch.as_tensor(data.y_test, dtype=torch.int64),
    )


def test_whitening_layer_decorrelates_the_patches_of_the_images_it_saw() -> None:
    """After init_whitening, do the first filters map 2x2 patches to unit, uncorrelated outputs?"""
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(3, 3, generator=generator)
    images = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(400, 3, 32, 32, generator=generator))
    images = images + images.roll(1, dims=3)  # neighbouring pixels correlate, as in photos
    model = StrongNet()
    model.init_whitening(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, model.whiten.weight[:12])
    flat = out.permute(1, 0, 2, 3).reshape(12, -1).double()
    covariance = flat @ flat.T / flat.shape[1]
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=0.05)
    assert torch.equal(model.whiten.weight[12:], -model.whiten.weight[:12])
    assert not model.whiten.weight.requires_grad


def test_translate_crops_each_image_at_a_shift_of_at_most_two_pixels() -> None:
    """Is every augmented image a 32x32 window of its own padded image, with varied shifts?"""
    images = torch.randn(64, 3, 32, 32)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    out = _translate(padded, 2, 32, torch.Generator().manual_seed(0))
    shifts = set()
    for k in range(len(images)):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[k], padded[k, :, dy : dy + 32, dx : dx + 32])
        ]
        assert found, f"image {k} is not a window of its padded image"
        shifts.add(found[0])
    assert len(shifts) > 10


def test_training_learns_the_synthetic_classes_and_calls_back_each_epoch(synthetic) -> None:
    """Tiny widths, 3 epochs of 512 images: far above chance, one callback per epoch in eval mode?"""
    x, y, x_test, y_test = synthetic
    seen = []
    model, history = train_strongnet(
        x, y, TINY, on_epoch=lambda epoch, m: seen.append((epoch, m.training))
    )
    assert seen == [(0, False), (1, False), (2, False)]
    assert len(history) == 3 and history[-1] < history[0]
    accuracy = (predict_strongnet(model, x_test, 0) == y_test).double().mean().item()
    assert accuracy > 0.5


def test_same_seed_same_model_other_seed_other_model(synthetic) -> None:
    x, y, _, _ = synthetic
    recipe = dataclasses.replace(TINY, n_epochs=1)
    (first, history), (again, history_again) = (
        train_strongnet(x, y, recipe),
        train_strongnet(x, y, recipe),
    )
    other, _ = train_strongnet(x, y, dataclasses.replace(recipe, seed=1))
    assert history == history_again
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values())
    )
    assert not torch.equal(first.head.weight, other.head.weight)


def test_a_fractional_epoch_count_stops_mid_epoch(synthetic) -> None:
    """n_epochs=1.5 over 512 images in batches of 64 (bfloat16 autocast, the recipe's default): 12
    steps, the second epoch reported half-way?"""
    x, y, _, _ = synthetic
    steps = []
    original = torch.optim.SGD.step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.SGD, "step", counted)
        _, history = train_strongnet(x, y, dataclasses.replace(TINY, n_epochs=1.5, bfloat16=True))
    assert len(steps) == 12 and len(history) == 2


def test_test_time_augmentation_keeps_one_class_per_image(synthetic) -> None:
    """Each TTA level returns one class index per image; mirroring a symmetric input changes nothing."""
    x, y, x_test, _ = synthetic
    model, _ = train_strongnet(x, y, dataclasses.replace(TINY, n_epochs=1))
    symmetric = (x_test + x_test.flip(3)) / 2
    plain = predict_strongnet(model, symmetric, 0)
    assert torch.equal(predict_strongnet(model, symmetric, 1), plain)
    translated = predict_strongnet(model, x_test, 2)
    assert (
        translated.shape == (len(x_test),)
        and int(translated.min()) >= 0
        and int(translated.max()) <= 9
    )
