"""PyTorch CPU twins of the benchmarked fastcnn models, for the optional peer group.

Each builder returns ``(model, loss_fn)`` for the same architecture as the
matching ``fastcnn.zoo`` preset. Import this module only after
``pytest.importorskip('torch')`` (or a guarded ``import torch`` in a script).

Every builder runs in either memory format (``layout``: ``"nchw"``, torch's
default contiguous format, or ``"channels_last"``, the same NHWC memory as
fastcnn's arrays); the benchmarks time both and compare with the faster.
"""

from __future__ import annotations

import torch
from torch import nn


def simpleconvnet() -> tuple[nn.Module, callable]:
    """conv 30x5x5 valid - relu - max 2 - 100 - relu - 10 (seed 004's SimpleConvNet)."""
    model = nn.Sequential(
        nn.Conv2d(1, 30, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(30 * 12 * 12, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
    return model, nn.CrossEntropyLoss()


#: layout name -> torch memory format (names as in ``bench_common.TORCH_LAYOUTS``)
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _three_conv(outputs: int) -> nn.Sequential:
    """conv 6/12/24 (3x3 same, relu) with max 2, max 2, avg 3 on 96x96x3, then one dense layer."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(12, 24, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(3),
        nn.Flatten(),
        nn.Linear(24 * 8 * 8, outputs),
    )


def flower(classes: int = 5) -> tuple[nn.Module, callable]:
    """The book's flowers network (the ``flower`` preset): the three-conv stack, 5 classes."""
    return _three_conv(classes), nn.CrossEntropyLoss()


def office31(domains: int = 3, objects: int = 31) -> tuple[nn.Module, callable]:
    """The seed's Office-31 model: conv 6/12/24 (3x3 same) with max 2, max 2, avg 3, two heads."""
    model = _three_conv(domains + objects)
    ce = nn.CrossEntropyLoss()

    def dual_loss(out, target):
        domain, obj = target
        return ce(out[:, :domains], domain) + ce(out[:, domains:], obj)

    return model, dual_loss


def make_step(model: nn.Module, loss_fn, layout: str = "channels_last"):
    """Return ``step(x, t)``: forward, backward and one Adam update, parameters in ``layout``."""
    model = model.to(memory_format=MEMORY_FORMATS[layout])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    return step


def nchw_input(batch: int, chn: int, h: int, w: int, layout: str = "channels_last", seed: int = 0):
    """Synthetic float32 input, shape NCHW, stored in ``layout`` (contiguous NCHW or channels-last)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, chn, h, w, generator=g)
    return x.contiguous(memory_format=MEMORY_FORMATS[layout])
