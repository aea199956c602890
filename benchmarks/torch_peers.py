"""PyTorch CPU twins of the benchmarked fastcnn models, for the optional peer group.

Each builder returns ``(model, loss_fn)`` for the same architecture as the
matching ``fastcnn.zoo`` preset. Import this module only after
``pytest.importorskip('torch')``.
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


def office31(domains: int = 3, objects: int = 31) -> tuple[nn.Module, callable]:
    """The seed's Office-31 model: conv 6/12/24 (3x3 same) with max 2, max 2, avg 3, two heads."""
    model = nn.Sequential(
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
        nn.Linear(24 * 8 * 8, domains + objects),
    )
    ce = nn.CrossEntropyLoss()

    def dual_loss(out, target):
        domain, obj = target
        return ce(out[:, :domains], domain) + ce(out[:, domains:], obj)

    return model, dual_loss


def make_step(model: nn.Module, loss_fn, channels_last: bool = True):
    """Return ``step(x, t)``: forward, backward and one Adam update."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    return step


def nchw_input(batch: int, chn: int, h: int, w: int, channels_last: bool = True, seed: int = 0):
    """Synthetic float32 input in NCHW, optionally stored channels-last."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, chn, h, w, generator=g)
    return x.to(memory_format=torch.channels_last) if channels_last else x
