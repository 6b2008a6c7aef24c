"""The Attention lens's own judgement: heads whose output stays zero over a window are dead.

(The per-head numbers it records are checked against torch in tests/gatherers/test_attention.py,
with the gatherer that recomputes the weights.)
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerscope
from layerscope.lenses import Attention
from layerscope.records import select
from models import record_value


def test_dead_head_is_counted():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3)  # sequence-first
    with torch.no_grad():  # head 1 reads a value projection of zeros: its output is zero
        mha.in_proj_weight[24 + 4 : 24 + 8] = 0
        mha.in_proj_bias[24 + 4 : 24 + 8] = 0
    x = torch.randn(5, 2, 12)
    with layerscope.watch(mha, lenses=[Attention()]) as scope:
        mha(x, x, x)[0].sum().backward()
        scope.step()
    records = scope.records()
    assert (
        record_value(records, site="model:attention", quantity="dead_heads", statistic="count") == 1
    )
    assert record_value(
        records, site="model:attention", quantity="dead_heads", statistic="fraction"
    ) == pytest.approx(1 / 3)
    assert record_value(records, site="model:attention.head1", quantity="output_l2") == 0
    assert record_value(records, site="model:attention.head0", quantity="output_l2") > 0


def test_dead_heads_need_a_silent_window_and_survive_a_checkpoint():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    for p in mha.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        mha.in_proj_weight[16:20] = 0  # head 0 reads zero values: silent on every step
        mha.in_proj_bias[16:20] = 0
    x = torch.randn(3, 2, 8, requires_grad=True)
    lens = Attention(window=3)
    with layerscope.watch(mha, lenses=[lens]) as scope:
        for _ in range(2):
            mha(x, x, x)[0].sum().backward()
            scope.step()
    counts = [r.value for r in select(scope.records(), quantity="dead_heads", statistic="count")]
    assert counts == [0, 0]
    state = scope.state_dict()
    with layerscope.watch(mha, lenses=[Attention(window=3)]) as scope:
        scope.load_state_dict(state)
        mha(x, x, x)[0].sum().backward()
        scope.step()
    assert record_value(scope.records(), quantity="dead_heads", statistic="count") == 1
