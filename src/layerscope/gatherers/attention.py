"""Attention gatherer: per-head statistics of attention weights, reduced on the tensor's device.

``nn.MultiheadAttention`` returns its weights only when asked (``need_weights=True``), and
Transformer layers never ask. Asking for them would change the call itself: the weights path
runs an explicit softmax instead of ``scaled_dot_product_attention`` (different rounding) and
draws dropout differently, so outputs would no longer be bitwise those of an unobserved run.
This gatherer therefore never touches the call. A forward hook recomputes the weights from the
call's inputs and the module's projection weights, under ``no_grad`` and without dropout:

    cost per observed call = 3 input projections + Q·Kᵀ + softmax + weights·V (no grad),

about one extra attention forward, paid only on the steps a lens observes, with peak memory of
one (batch, heads, queries, keys) weights tensor. Fused fast paths (eval, no grad) are not
observed: like every gatherer, only passes with gradients enabled count as training.

Modules whose output holds the weights (an ``Attention(output_path="[1]")`` lens) are read
directly; their tensor is taken as (batch, heads, queries, keys), (batch, queries, keys) for a
single head, or (queries, keys).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerscope.gatherers.base import GatherContext, Gatherer, contained
from layerscope.observation import site_name, tensor_leaves
from layerscope.stats.vectors import L2, MEAN, VectorRows

#: Rows of the (quantities, heads) tensor observed per call, in order, with their merge rules:
#: means over batch and query rows, and the norm of each head's output.
HEAD_ROWS = VectorRows.of(
    entropy=MEAN,
    entropy_ratio=MEAN,
    max_weight=MEAN,
    first_key_mass=MEAN,
    diagonal_mass=MEAN,
    output_l2=L2,
)
#: The names of :data:`HEAD_ROWS`.
HEAD_QUANTITIES: tuple[str, ...] = HEAD_ROWS.names
#: Transformer layers whose attention submodules are observed when the layer is selected.
TRANSFORMER_LAYERS: tuple[type[nn.Module], ...] = (
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
log = logging.getLogger("layerscope")
_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")


def head_statistics(weights: torch.Tensor, head_output: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce attention weights (batch, heads, queries, keys) to a (quantities, heads) tensor.

    Rows follow :data:`HEAD_QUANTITIES`; each is a mean over batch and query rows, except
    ``output_l2``: the L2 norm of each head's output (batch, heads, queries, head_dim) over
    everything but the head axis, NaN when no head output is known. ``entropy_ratio`` divides by
    ``log(keys)`` (masked keys included); ``diagonal_mass`` reads the first ``min(queries, keys)``
    rows.
    """
    w = weights.detach().float()
    keys = w.shape[-1]
    entropy = -torch.special.xlogy(w, w).sum(-1).mean(dim=(0, 2))
    ratio = entropy / math.log(keys) if keys > 1 else torch.full_like(entropy, math.nan)
    rows = [
        entropy,
        ratio,
        w.amax(-1).mean(dim=(0, 2)),
        w[..., 0].mean(dim=(0, 2)),
        torch.diagonal(w, dim1=-2, dim2=-1).mean(dim=(0, 2)),
    ]
    if head_output is None:
        rows.append(torch.full_like(entropy, math.nan))
    else:
        rows.append(torch.linalg.vector_norm(head_output.detach().float(), dim=(0, 2, 3)))
    return torch.stack(rows)


def rows_of(weights: torch.Tensor) -> int:
    """The query rows (batch × queries) the means of :func:`head_statistics` average over."""
    return weights.shape[0] * weights.shape[2]


def as_heads(weights: torch.Tensor) -> torch.Tensor:
    """View a user-named attention tensor as (batch, heads, queries, keys)."""
    if weights.dim() == 2:
        return weights[None, None]
    if weights.dim() == 3:
        return weights[:, None]
    return weights.reshape(-1, *weights.shape[-3:])


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn a boolean mask (True: not allowed) into the additive float mask MHA reads."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, -math.inf
        )
    return mask.to(dtype)


def recompute_attention(
    module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recompute one ``MultiheadAttention`` call's weights and per-head outputs, without dropout.

    Returns weights (batch, heads, queries, keys) and per-head outputs (batch, heads, queries,
    head_dim) before the output projection. Call under ``torch.no_grad()``.
    """
    call = dict(zip(_MHA_ARGS, args, strict=False))
    call.update(kwargs)
    query, key, value = call["query"], call["key"], call["value"]
    kpm, attn_mask = call.get("key_padding_mask"), call.get("attn_mask")
    if query.dim() == 2:  # unbatched (L, E)
        query, key, value = query[:, None], key[:, None], value[:, None]
        kpm = None if kpm is None else kpm[None]
    elif module.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    length, batch, embed = query.shape
    heads = module.num_heads
    dim = embed // heads
    if module._qkv_same_embed_dim:
        wq, wk, wv = module.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    bq = bk = bv = None
    if module.in_proj_bias is not None:
        bq, bk, bv = module.in_proj_bias.chunk(3)
    q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
    mask, kpm = _float_mask(attn_mask, q.dtype), _float_mask(kpm, q.dtype)
    if module.bias_k is not None and module.bias_v is not None:
        k = torch.cat([k, module.bias_k.repeat(1, batch, 1)])
        v = torch.cat([v, module.bias_v.repeat(1, batch, 1)])
        mask = None if mask is None else F.pad(mask, (0, 1))
        kpm = None if kpm is None else F.pad(kpm, (0, 1))
    q = q.reshape(length, batch * heads, dim).transpose(0, 1)
    k = k.reshape(k.shape[0], batch * heads, dim).transpose(0, 1)
    v = v.reshape(v.shape[0], batch * heads, dim).transpose(0, 1)
    if module.add_zero_attn:
        zeros = torch.zeros((batch * heads, 1, dim), dtype=k.dtype, device=k.device)
        k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
        mask = None if mask is None else F.pad(mask, (0, 1))
        kpm = None if kpm is None else F.pad(kpm, (0, 1))
    keys = k.shape[1]
    scores = torch.bmm(q * math.sqrt(1.0 / dim), k.transpose(1, 2)).view(batch, heads, length, keys)
    if mask is not None:
        scores = scores + (mask if mask.dim() == 2 else mask.view(batch, heads, length, keys))
    if kpm is not None:
        scores = scores + kpm.view(batch, 1, 1, keys)
    weights = torch.softmax(scores, dim=-1)
    output = torch.matmul(weights, v.view(batch, heads, keys, dim))
    return weights, output


class AttentionGatherer(Gatherer):
    """Observes per-head attention statistics (kind ``"attention"``).

    Each observed call hands the scope one small (quantities, heads) tensor (rows:
    :data:`HEAD_ROWS`) and the number of query rows it averages (:func:`rows_of`), at
    site ``"<attention module>:attention"``, e.g. ``"enc.layers.0.self_attn:attention"``; the
    ``Attention`` lens reads it whole from the window's ``values``. A selected Transformer layer
    is observed through its ``self_attn`` and ``multihead_attn`` submodules; another module
    needs the lens's ``output_path``.
    """

    kinds = ("attention",)

    def __init__(self, context: GatherContext) -> None:
        super().__init__(context)
        self._closed = False
        self._noted: set[str] = set()
        self._handles: list[RemovableHandle] = []
        hooked: set[int] = set()
        for name, module in context.modules_wanting(*self.kinds).items():
            paths = {getattr(lens, "output_path", None) for lens in context.lenses.get(name, [])}
            paths.discard(None)
            if paths:
                for path in sorted(paths):
                    hook = partial(self._output_hook, name, site_name(name, "attention", ""), path)
                    self._handles.append(module.register_forward_hook(hook))
                continue
            targets = self._attention_modules(name, module)
            for sub_name, sub in targets:
                if id(sub) in hooked:
                    continue
                hooked.add(id(sub))
                hook = partial(self._mha_hook, name, site_name(sub_name, "attention"))
                self._handles.append(sub.register_forward_hook(hook, with_kwargs=True))

    @staticmethod
    def _attention_modules(name: str, module: nn.Module) -> list[tuple[str, nn.MultiheadAttention]]:
        if isinstance(module, nn.MultiheadAttention):
            return [(name, module)]
        if isinstance(module, TRANSFORMER_LAYERS):
            return [
                (f"{name}.{child}" if name else child, getattr(module, child))
                for child in ("self_attn", "multihead_attn")
                if isinstance(getattr(module, child, None), nn.MultiheadAttention)
            ]
        raise ValueError(
            f"Attention: module {name or 'model'!r} ({type(module).__name__}) is neither an "
            "nn.MultiheadAttention nor a Transformer layer; name the output leaf that holds its "
            "attention weights with Attention(output_path=...), e.g. output_path='[1]'"
        )

    @contained
    def _mha_hook(
        self,
        name: str,
        site: str,
        module: nn.MultiheadAttention,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output: Any,  # noqa: ANN401
    ) -> None:
        if (
            self._closed
            or not torch.is_grad_enabled()
            or not self.context.enabled(name, "attention")
        ):
            return
        with torch.no_grad():
            weights, head_output = recompute_attention(module, args, kwargs)
            values = head_statistics(weights, head_output)
        self.context.observe(
            name, "attention", site, values, count=rows_of(weights), rows=HEAD_ROWS
        )

    @contained
    def _output_hook(
        self,
        name: str,
        site: str,
        path: str,
        module: nn.Module,
        args: Any,
        output: Any,  # noqa: ANN401
    ) -> None:
        if (
            self._closed
            or not torch.is_grad_enabled()
            or not self.context.enabled(name, "attention")
        ):
            return
        for leaf_path, tensor in tensor_leaves(output):
            if leaf_path == path and tensor.is_floating_point() and tensor.dim() >= 2:
                with torch.no_grad():
                    heads = as_heads(tensor)
                    values = head_statistics(heads)
                self.context.observe(
                    name, "attention", site, values, count=rows_of(heads), rows=HEAD_ROWS
                )
                return
        if site not in self._noted:  # a run-time skip: noted once, training goes on
            self._noted.add(site)
            leaves = [p for p, _ in tensor_leaves(output)]
            log.info(
                "layerscope: skipping %s: its output has no floating tensor of 2+ dims at "
                "output_path=%r; its tensor leaves are %s",
                site,
                path,
                leaves,
            )

    def remove(self) -> None:
        """Remove every hook."""
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
