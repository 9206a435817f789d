"""Two augmented views per image for Barlow Twins, made in batches on the device.

Every random number of a view is drawn at once, per image, from the caller's
``torch.Generator`` (on the device of the batch): one ``torch.rand`` of shape
(B, 12) per view, plus the blur kernels computed from it. There is no
per-image Python loop, no global RNG, no host sync (``.item()``) and no Python
branch on tensor values, so the transform can sit inside a captured CUDA-graph
step and two runs with the same generator state give the same views.

Per view and image (Zbontar et al. 2021, adapted to small medical images):

* random resized crop, area scale in [0.5, 1] for 1 channel (X-rays; a crop
  should keep the anatomy) or [0.2, 1] for 3 channels, aspect ratio in
  [3/4, 4/3], and a horizontal flip with probability 1/2, done together by one
  batched ``affine_grid`` / ``grid_sample``;
* with probability 0.8, brightness and contrast jitter (+-0.4 * strength), and
  for 3 channels saturation jitter (+-0.2 * strength); for 3 channels, random
  grayscale with probability 0.2. No hue or solarisation;
* with probability 0.5, a small Gaussian blur, sigma in [0.1, max(0.6, 2 * size / 224)];
* optional Gaussian pixel noise (``noise_std``, off by default);
* normalisation ``(x - mean) / std``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssnas_core.errors import ConfigError

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


class TwoViews:
    """Make two independently augmented, normalised float views of a uint8 batch.

    Args:
        size: output side H = W in pixels.
        n_channels: channels C of the input, 1 or 3.
        mean: per-channel mean of the normalisation, length C (default 0.5 each).
        std: per-channel std of the normalisation, length C (default 0.5 each).
        strength: scales the colour jitter ranges and the blur; 0 keeps only crop and flip.
        blur_prob: probability of the Gaussian blur per image.
        noise_std: std of additive Gaussian noise in [0, 1] pixel units; 0 disables it.
    """

    def __init__(
        self,
        size: int,
        n_channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        strength: float = 1.0,
        *,
        blur_prob: float = 0.5,
        noise_std: float = 0.0,
    ) -> None:
        if n_channels not in (1, 3) or size < 1:
            raise ConfigError(f"TwoViews: found size={size}, n_channels={n_channels}, expected size >= 1 and 1 or 3")
        self.mean = tuple(float(m) for m in (mean if mean is not None else [0.5] * n_channels))
        self.std = tuple(float(s) for s in (std if std is not None else [0.5] * n_channels))
        if len(self.mean) != n_channels or len(self.std) != n_channels or min(self.std) <= 0:
            raise ConfigError(
                f"TwoViews: mean {self.mean} and std {self.std} must have {n_channels} entries with std > 0"
            )
        if not (strength >= 0 and 0 <= blur_prob <= 1 and noise_std >= 0):
            raise ConfigError(
                f"TwoViews: found strength={strength}, blur_prob={blur_prob}, noise_std={noise_std}; expected "
                "strength >= 0, blur_prob in [0, 1], noise_std >= 0"
            )
        self.size = size
        self.n_channels = n_channels
        self.strength = float(strength)
        self.blur_prob = float(blur_prob)
        self.noise_std = float(noise_std)
        self.min_scale = 0.5 if n_channels == 1 else 0.2
        self.sigma_max = max(0.6, 2.0 * size / 224) * self.strength
        self.blur_k = 2 * math.ceil(2 * max(self.sigma_max, 0.1)) + 1  # odd, covers +-2 sigma
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"TwoViews(size={self.size}, n_channels={self.n_channels}, mean={self.mean}, std={self.std}, "
            f"strength={self.strength}, blur_prob={self.blur_prob}, noise_std={self.noise_std})"
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != self.n_channels:
            raise ConfigError(
                f"TwoViews: found a {x.dtype} batch of shape {tuple(x.shape)}, expected uint8 "
                f"(B, {self.n_channels}, H, W); pass the raw images of the dataset"
            )

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        stats = self._stats.get(x.device)
        if stats is None:  # made once per device, so later calls copy nothing to the device
            shape = (1, self.n_channels, 1, 1)
            stats = (
                torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(shape),
                torch.tensor(self.std, dtype=torch.float32, device=x.device).view(shape),
            )
            self._stats[x.device] = stats
        return ((x - stats[0]) / stats[1]).contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-time transform: no augmentation.

        Args:
            x: uint8 (B, C, H, W) on any device.

        Returns:
            float32 (B, C, size, size), resized (bilinear, antialiased) if H or W differ from size.
        """
        self._check(x)
        y = x.float().div_(255.0)
        if y.shape[-2:] != (self.size, self.size):
            y = F.interpolate(y, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self._normalise(y)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of a batch.

        Args:
            x: uint8 (B, C, H, W) on the device of ``generator``.
            generator: the only source of randomness; its state advances.

        Returns:
            Two float32 (B, C, size, size) normalised views on the device of ``x``.
        """
        self._check(x)
        if generator.device.type != x.device.type:
            raise ConfigError(
                f"TwoViews: the generator is on {generator.device} but the batch on {x.device}; make the "
                "generator with torch.Generator(device=batch.device)"
            )
        # Both views in one pass over a doubled batch: half the kernels of two passes. The generator's draws
        # come in the same order as two passes' would when noise_std is 0 (on the CPU: the same views, bit for bit).
        b = x.shape[0]
        both = self._augment(torch.cat([x, x]).float().div_(255.0), generator)  # doubled as uint8: 4x fewer bytes
        return both[:b], both[b:]

    def one_view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view (the fine-tune's training transform), made alone rather than one of two.

        Args:
            x: uint8 (B, C, H, W) on the device of ``generator``.
            generator: the only source of randomness; its state advances.

        Returns:
            A float32 (B, C, size, size) normalised view.
        """
        self._check(x)
        if generator.device.type != x.device.type:
            raise ConfigError(f"TwoViews: the generator is on {generator.device} but the batch on {x.device}")
        return self._augment(x.float().div_(255.0), generator)

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented, normalised view of a float batch in [0, 1] of shape (B, C, H, W)."""
        b = x.shape[0]
        u = torch.rand((b, 12), generator=generator, device=x.device)
        x = self._crop_flip(x, u[:, 0:5])
        x = self._colour(x, u[:, 5:10])
        x = self._blur(x, u[:, 10:12])
        if self.noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x = (x + self.noise_std * noise).clamp_(0.0, 1.0)
        return self._normalise(x)

    def _crop_flip(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Random resized crop + horizontal flip; u: (B, 5) uniforms."""
        area = self.min_scale + (1.0 - self.min_scale) * u[:, 0]
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).clamp(max=1.0)  # half-widths in normalised [-1, 1] coordinates
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (1.0 - w) * (2.0 * u[:, 2] - 1.0)
        ty = (1.0 - h) * (2.0 * u[:, 3] - 1.0)
        flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * flip, zero, tx], 1), torch.stack([zero, h, ty], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _gray(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_channels == 1:
            return x
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        return _GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b

    def _colour(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast (and saturation, grayscale for RGB); u: (B, 5) uniforms."""
        s = self.strength
        apply = (u[:, 0] < 0.8).view(-1, 1, 1, 1)
        brightness = (1.0 + 0.4 * s * (2.0 * u[:, 1] - 1.0)).view(-1, 1, 1, 1)
        contrast = (1.0 + 0.4 * s * (2.0 * u[:, 2] - 1.0)).view(-1, 1, 1, 1)
        y = (x * brightness).clamp(0.0, 1.0)
        m = self._gray(y).mean(dim=(1, 2, 3), keepdim=True)
        y = ((y - m) * contrast + m).clamp(0.0, 1.0)
        if self.n_channels == 3:
            saturation = (1.0 + 0.2 * s * (2.0 * u[:, 3] - 1.0)).view(-1, 1, 1, 1)
            gray = self._gray(y)
            y = ((y - gray) * saturation + gray).clamp(0.0, 1.0)
        y = torch.where(apply, y, x)
        if self.n_channels == 3:
            to_gray = (u[:, 4] < 0.2).view(-1, 1, 1, 1)
            y = torch.where(to_gray, self._gray(y).expand_as(y), y)
        return y

    def _blur(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Per-image separable Gaussian blur with probability ``blur_prob``; u: (B, 2) uniforms."""
        if self.blur_prob == 0 or self.sigma_max == 0:
            return x
        b, c, height, width = x.shape
        k = self.blur_k
        sigma = 0.1 + (max(self.sigma_max, 0.1) - 0.1) * u[:, 1]  # (B,)
        offsets = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
        kernel = torch.exp(-(offsets[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
        y = x.reshape(1, b * c, height, width)
        pad = k // 2
        mode = "reflect" if min(height, width) > pad else "replicate"
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode=mode), kernel.view(b * c, 1, k, 1), groups=b * c)
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode=mode), kernel.view(b * c, 1, 1, k), groups=b * c)
        apply = (u[:, 0] < self.blur_prob).view(-1, 1, 1, 1)
        return torch.where(apply, y.view(b, c, height, width), x)
