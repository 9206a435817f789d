"""Two-view augmentation on the device: shapes, determinism, independence, no global RNG."""

from __future__ import annotations

import pytest
import torch

from ssnas_core.data import TwoViews, make_synthetic
from ssnas_core.errors import ConfigError


def _batch(channels: int, size: int = 28, n: int = 16) -> torch.Tensor:
    return make_synthetic(n_train=n, n_val=0, n_test=2, size=size, channels=channels, seed=1).train.images


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtype_and_range(channels: int) -> None:
    x = _batch(channels)
    views = TwoViews(28, channels)
    a, b = views(x, torch.Generator().manual_seed(0))
    for v in (a, b):
        assert v.shape == x.shape and v.dtype == torch.float32 and v.is_contiguous()
        assert torch.isfinite(v).all() and v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5
    assert not torch.equal(a, b), "the two views must be augmented independently"
    assert (a - b).abs().mean() > 0.01


@pytest.mark.parametrize("channels", [1, 3])
def test_deterministic_given_generator(channels: int) -> None:
    x = _batch(channels)
    views = TwoViews(28, channels, noise_std=0.02)
    first = views(x, torch.Generator().manual_seed(7))
    again = views(x, torch.Generator().manual_seed(7))
    other = views(x, torch.Generator().manual_seed(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_does_not_touch_global_rng() -> None:
    x = _batch(1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    TwoViews(28, 1)(x, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_resizes_and_normalises() -> None:
    x = _batch(3, size=32, n=4)
    views = TwoViews(24, 3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    a, _ = views(x, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 24, 24)
    ev = views.normalize(x)
    assert ev.shape == (4, 3, 24, 24) and ev.dtype == torch.float32
    same = TwoViews(32, 3).normalize(x)
    assert torch.allclose(same, x.float() / 255 * 2 - 1)


def test_strength_zero_and_per_image_variation() -> None:
    x = _batch(1, n=8)
    a, _ = TwoViews(28, 1, strength=0.0)(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape
    same = x[:1].expand(8, -1, -1, -1).contiguous()
    v, _ = TwoViews(28, 1)(same, torch.Generator().manual_seed(0))
    assert not torch.equal(v[0], v[1]), "augmentation parameters are drawn per image"


def test_rejects_bad_input() -> None:
    views = TwoViews(28, 1)
    with pytest.raises(ConfigError, match="expected uint8"):
        views(torch.zeros(2, 1, 28, 28), torch.Generator())
    with pytest.raises(ConfigError, match="expected uint8"):
        views(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ConfigError):
        TwoViews(28, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_deterministic_and_free_of_host_syncs() -> None:
    x = _batch(3).cuda()
    views = TwoViews(28, 3, noise_std=0.01)
    views(x, torch.Generator(device="cuda").manual_seed(0))  # warm-up: the normalisation constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside the transform raises
    try:
        a = views(x, torch.Generator(device="cuda").manual_seed(0))
        b = views(x, torch.Generator(device="cuda").manual_seed(0))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert a[0].device.type == "cuda" and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
