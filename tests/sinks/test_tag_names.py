"""What a person browses in TensorBoard for a real model under the default lenses."""

import collections

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import layerscope


def test_a_six_layer_transformer_gets_a_browsable_layer_grouped_tag_list(tmp_path):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
    model = nn.Sequential(encoder, nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with layerscope.watch(model, opt, logdir=str(tmp_path)) as scope:
        for _ in range(11):  # parameters and optimizer state are read on steps 0 and 10
            loss = model(torch.randn(8, 10, 32)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    names = acc.Tags()["scalars"] + acc.Tags()["histograms"]
    assert len(names) < 1000  # 1,809 with the former defaults and helper scalars
    assert "loss" in names
    assert min(n.split("/")[0] for n in names) == "loss"  # TensorBoard shows it first
    assert not [n for n in names if "mean+std" in n or "mean-std" in n or ":" in n]
    sections = collections.Counter(n.split("/")[0] for n in names)
    assert max(sections.values()) <= 30  # per module, everything about it in one section
    linear1 = sorted(n for n in names if n.startswith("model.0.layers.3.linear1/"))
    assert "model.0.layers.3.linear1/weight.grad.l2" in linear1
    assert "model.0.layers.3.linear1/output.mean" in linear1
    assert "model.0.layers.3.linear1/weight.update_ratio" in linear1
