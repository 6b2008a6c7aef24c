"""Sites and observations: what a gatherer saw, and where.

A *site* is one observed place: a module's qualified name (from ``named_modules()``) plus what is
observed there — ``"fc1:output"``, ``"fc1:output.grad"``, ``"fc1:weight.grad"``, ``"fc1:weight"``.
Outputs that are tuples, lists, dicts or dataclasses give one site per tensor leaf:
``"lstm:output[0]"``, ``"lstm:output[1][0]"``, ``"head:output[logits]"``, ``"enc:output.hidden"``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import torch


def site_name(module_name: str, kind: str, path: str = "") -> str:
    """The site id: ``"<module>:<kind><path>"``; the root module is named ``"model"``."""
    return f"{module_name or 'model'}:{kind}{path}"


def site_module(site: str) -> str:
    """The module part of a site: ``"fc1:weight.grad"`` -> ``"fc1"``; a whole-net site as it is.

    Example:
        >>> site_module("encoder.0.fc1:output[0]"), site_module("loss")
        ('encoder.0.fc1', 'loss')
    """
    return site.partition(":")[0]


def site_kind(site: str) -> str:
    """What a site observes: the part after its colon (``"output[0]"``); ``""`` for whole-net sites.

    Example:
        >>> site_kind("fc1:weight.grad"), site_kind("loss")
        ('weight.grad', '')
    """
    return site.partition(":")[2]


def tensor_leaves(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:  # noqa: ANN401
    """Yield ``(path, tensor)`` for every tensor inside a module's output.

    Tuples and lists index by position (``[0]``), dicts by key (``[key]``), dataclasses and
    Hugging-Face-style outputs by field (``.field``); anything else is skipped.
    """
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from tensor_leaves(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from tensor_leaves(item, f"{path}[{key}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from tensor_leaves(getattr(value, f.name), f"{path}.{f.name}")


def is_distributed_tensor(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor (FSDP2's parameters, their gradients, optimizer state)."""
    # Importing torch.distributed.tensor costs half a second; a DTensor exists only once it is.
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def readable_reason(tensor: torch.Tensor) -> str | None:
    """Why a statistic cannot read `tensor`, or None when it can."""
    if tensor.layout != torch.strided:
        return f"{tensor.layout} layout"
    if not tensor.is_floating_point():
        return f"dtype {tensor.dtype}"
    if tensor.is_meta:
        return "meta device"
    if (
        type(tensor) is not torch.Tensor  # the usual case: no DTensor (a subclass)
        and is_distributed_tensor(tensor)
        and any(p.is_partial() for p in tensor.placements)
    ):
        return "a DTensor of partial sums, not yet reduced across ranks"
    return None
