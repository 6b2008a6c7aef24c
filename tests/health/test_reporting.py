"""Findings reach scope.findings(), TensorBoard (text), the console and the report; options."""

import io

import pytest
from torch import nn

import layerscope
from health_models import act_mlp, run, teacher_data
from layerscope import default_lenses as default
from layerscope.health import Finding, FindingLog, Health
from layerscope.sinks.console import ConsoleSink
from layerscope.sinks.report import ReportSink


def test_findings_reach_every_sink(tmp_path):
    out = io.StringIO()
    console = ConsoleSink(use_rich=False, stream=out)
    report = ReportSink(tmp_path / "report")
    scope, _ = run(
        act_mlp(nn.ReLU, first_bias=-10.0),
        teacher_data(22),
        logdir=str(tmp_path / "tb"),
        sinks=[console, report],
    )
    found = scope.findings()
    assert [(f.kind, f.site) for f in found] == [
        ("dead_units", "1:output"),
        ("gradient_death", "0:output.grad"),
    ]
    assert isinstance(found[0], Finding)

    printed = out.getvalue().splitlines()
    assert printed[0] == f"error: step 19: 1:output: dead_units: {found[0].text}"
    assert len([line for line in printed if "dead_units" in line]) == 1

    assert found[0].message in (tmp_path / "report" / "findings.md").read_text()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert "health/dead_units/text_summary" in acc.Tags()["tensors"]
    # the gradient death it causes is told in its text, not as a finding of its own
    assert "health/gradient_death/text_summary" not in acc.Tags()["tensors"]
    (event,) = acc.Tensors("health/dead_units/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 19
    assert "`1:output`" in text
    assert found[0].message in text
    assert text.startswith("**error**")
    assert not [t for t in acc.Tags()["scalars"] if t.startswith("health")]


def test_default_lenses_include_health():
    assert isinstance(default()[-1], Health)
    with layerscope.watch(act_mlp()) as scope:
        assert any(isinstance(lens, Health) for lens in scope.lenses)
        assert scope.findings() == []


def test_unknown_options_are_named():
    with pytest.raises(ValueError, match="unknown option 'saturaton'"):
        Health(saturaton={"fraction": 0.5})
    with pytest.raises(ValueError, match="check 'saturation' has no option 'limit'"):
        Health(saturation={"limit": 0.5})
    with pytest.raises(ValueError, match="unknown check 'spikes'"):
        Health(checks=("loss", "spikes"))
    with pytest.raises(ValueError, match="dead_units.fraction must be a number"):
        Health(dead_units={"fraction": "high"})
    with pytest.raises(ValueError, match="check 'loss', which is not run"):
        Health(checks=("nan_origin",), loss={"window": 5})
    with pytest.raises(ValueError, match="loss.window must be a positive integer"):
        Health(loss={"window": 0})
    with pytest.raises(ValueError, match="severity must be one of info, warning, error"):
        Finding("x", "fatal", 0, ())


def test_the_log_reports_once_updates_closes_and_reopens():
    log = FindingLog(close_after=2)
    warn = Finding("k", "warning", 0, ("a",), {"v": 1.0}, "m")
    assert [f.step for f in log.observe(1, [warn])] == [1]
    assert log.observe(2, [Finding("k", "warning", 2, ("a",), {"v": 2.0}, "m")]) == []
    assert log.findings()[0].evidence == {"v": 2.0}
    assert log.findings()[0].last_step == 2
    escalated = log.observe(3, [Finding("k", "error", 3, ("a",), {}, "m")])
    assert [(f.severity, f.step) for f in escalated] == [("error", 1)]
    log.observe(3, [])  # a second part of the same step does not count towards closing
    log.observe(4, [])
    assert log.is_open("k", "a")
    log.observe(5, [])
    assert not log.is_open("k", "a")
    assert log.findings()[-1].closed_step == 4
    assert [f.step for f in log.observe(9, [warn])] == [9]
    assert [f.step for f in log.findings()] == [1, 9]
