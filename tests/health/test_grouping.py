"""Findings grouped by cause, on the demo's planted faults: one message per cause."""

import pytest
import torch
from torch import nn

import layerscope
from layerscope.demo import DigitsMLP, load_data
from layerscope.health.findings import Finding, FindingLog, explains, share_text


@pytest.fixture(scope="module")
def bad_run():
    """The demo's bad variant: fc1's bias at -10 before a ReLU, and a learning rate ×100."""
    torch.manual_seed(0)
    x, y = load_data()
    model = DigitsMLP(dead_bias=-10.0)
    opt = torch.optim.SGD(model.parameters(), lr=5.0, momentum=0.9)
    with layerscope.watch(model, optimizer=opt) as scope:
        for step in range(120):
            batch = slice((step * 64) % 1728, (step * 64) % 1728 + 64)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)
    return scope


def test_one_message_per_cause(bad_run):
    reported = [(r.statistic, r.site) for r in bad_run.records() if r.quantity == "finding"]
    assert reported == [
        ("dead_units", "act1:output"),
        ("dead_units", "act2:output"),  # 75%, then all: reported again when it got worse
        ("dead_units", "act2:output"),
        ("update_ratio_high", "fc3:bias"),
    ]


def test_consequences_are_kept_under_their_cause(bad_run):
    found = {(f.kind, f.site): f for f in bad_run.findings()}
    assert found[("gradient_death", "fc1:output.grad")].cause == ("dead_units", "act1:output")
    assert found[("gradient_death", "fc2:output.grad")].cause == ("dead_units", "act2:output")
    still = [f for f in found.values() if f.kind == "update_ratio_low"]
    assert still  # parameters that stopped moving because no gradient reaches them
    assert all(f.cause is not None for f in still)
    act1 = found[("dead_units", "act1:output")]
    assert act1.text.startswith("100% of act1's units never fired over the window, so fc1 gets")


def test_no_contradicting_advice_and_plain_numbers(bad_run):
    texts = [r.text for r in bad_run.records() if r.quantity == "finding"]
    assert not [t for t in texts if "raise the learning rate" in t]
    assert not [t for t in texts if "1e-" in t or "1e0" in t]
    (update,) = [t for t in texts if "fc3.bias" in t]
    assert update.startswith("each update moves fc3.bias by ")
    assert "% of its size (expected 0.001% to 32%); lower the learning rate" in update


def test_share_text_reads_as_a_person_writes():
    assert share_text(10**-0.2) == "63%"
    assert share_text(1e-5) == "0.001%"
    assert share_text(2e-7) == "1/5,000,000"


def test_a_cause_must_be_open_and_upstream():
    dead = Finding("dead_units", "error", 5, ("act2:output",), {"dead_fraction": 1.0})
    starved = Finding("gradient_death", "error", 5, ("fc1:output.grad",), {"dead_fraction": 1.0})
    below = Finding("gradient_death", "error", 5, ("fc3:output.grad",), {"dead_fraction": 1.0})
    order = {"fc1": 1, "act2": 4, "fc3": 5}
    assert explains(dead, starved, order)
    assert not explains(dead, below, order)  # a dead layer starves only what lies before it
    closed = Finding(**{**dead.__dict__, "closed_step": 9})
    assert not explains(closed, starved, order)
    log = FindingLog()
    assert [f.kind for f in log.observe(5, [dead, starved], order)] == ["dead_units"]
    assert log.findings()[0].consequences == ("fc1 gets no gradient",)
