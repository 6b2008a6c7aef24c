"""Summarize a torch tensor and a numpy array with layerscope's fused one-pass kernel.

.venv/bin/python examples/summarize_tensor.py
"""

import numpy as np
import torch

from layerscope import stats


def show(title: str, s: stats.Summary) -> None:
    print(f"{title}\n  {s}")
    print(f"  l1={s.l1:.4g}  variance={s.variance:.4g}  non-finite={s.nonfinite}")
    if s.channels > 1:
        active = s.channel_active / np.maximum(s.channel_count, 1)
        print(f"  per-channel active fraction: {np.array2string(active, precision=2)}")


def main() -> None:
    # A ReLU layer's output: (batch, features), a few features never fire.
    x = torch.relu(torch.randn(512, 8) + torch.linspace(-4, 1, 8))
    show(
        "ReLU activations (torch, channel_axis=1, active means x > 0):",
        stats.summarize(x, channel_axis=1, threshold=0.0),
    )

    # A numpy image batch in NCHW with a NaN, viewed transposed: read in place, no copy.
    images = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    images[0, 1, 2, 3] = np.nan
    show("Image batch (numpy, channel_axis=1):", stats.summarize(images, channel_axis=1))
    show(
        "Same batch transposed to NHWC (channel_axis=-1):",
        stats.summarize(images.transpose(0, 2, 3, 1), channel_axis=-1),
    )

    # bfloat16 weights of a layer that requires grad.
    w = torch.nn.Linear(64, 32).weight.bfloat16()
    show("Linear weight (bfloat16, channel_axis=0):", stats.summarize(w, channel_axis=0, eps=0.05))


if __name__ == "__main__":
    main()
