"""The demo: its parts, and a full (short) run that must find the planted faults."""

import math

import pytest
import torch

from layerscope.demo import DigitsMLP, Findings, load_data, run_demo
from layerscope.records import Record


def test_planted_bias_kills_every_first_layer_unit():
    x, y = load_data()
    assert x.shape == (1797, 64)
    assert float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    bad, healthy = DigitsMLP(dead_bias=-10.0), DigitsMLP()
    with torch.no_grad():
        assert bool((bad.act1(bad.fc1(x)) == 0).all())
        assert float((healthy.act1(healthy.fc1(x)) > 0).float().mean()) > 0.3


def test_findings_take_latest_values():
    rs = [
        Record(1, 0, "activations", "fc1:output", "dead", "fraction", 0.2),
        Record(9, 0, "activations", "fc1:output", "dead", "fraction", 1.0),
        Record(9, 0, "gradient_activity", "fc1:output.grad", "dead", "fraction", 0.5),
        Record(9, 0, "gradients", "fc2:weight.grad", "l2", "last", 0.5),
        Record(9, 0, "gradients", "fc2:bias.grad", "l2", "last", 7.0),
        Record(9, 0, "loss", "", "loss", "last", 1.25),
    ]
    found = Findings.from_records(rs)
    assert found.dead == {"fc1": 1.0}
    assert found.gradient_dead == {"fc1": 0.5}
    assert found.grad_norms == {"fc2": 0.5}
    assert found.loss == 1.25
    assert found.lines("bad") == [
        "bad: final loss 1.25",
        "  dead units (never active): fc1 100%",
        "  gradient death (zero output gradient): fc1 50%",
        "  weight-gradient norms: fc2 0.5",
    ]
    assert math.isnan(Findings.from_records([]).loss)


def test_bad_steps_named():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        run_demo(steps=0)


@pytest.mark.slow
def test_demo_finds_the_planted_faults(tmp_path):
    lines = []
    results = run_demo(tmp_path, steps=30, progress=False, echo=lines.append)
    assert results["bad"].dead["act1"] == 1.0  # bias -10 before the ReLU: every unit dead
    assert results["bad"].gradient_dead["fc1"] == 1.0  # so no gradient reaches fc1's output
    assert results["healthy"].dead["act1"] < 0.5
    assert (tmp_path / "report" / "bad").is_dir()
    assert "units never fired" in (tmp_path / "report" / "bad" / "report.html").read_text()
    assert any((tmp_path / "tensorboard" / "healthy").iterdir())
    assert lines[0].startswith("healthy: final loss")
    assert results["healthy"].health == []  # no false alarm
    assert any(
        "act1:output" in line and "dead_units" not in line and "units never fired" in line
        for line in results["bad"].health
    )
    assert any(line.strip().startswith("health findings") for line in lines)
