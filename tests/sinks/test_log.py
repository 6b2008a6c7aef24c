"""The layerscope logger: one line at attach, each new finding once, configurable."""

import logging
import subprocess
import sys

import torch
from torch import nn

import layerscope
from health_models import act_mlp, run, teacher_data


def nan_run(steps: int = 12) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with layerscope.watch(model, opt) as scope:
        for i in range(steps):
            x = torch.randn(8, 4)
            if i >= 2:  # NaN from step 2 on, every step
                x[0, 0] = float("nan")
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scope.step(loss=loss)


def test_attach_line_says_what_is_watched_and_where(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="layerscope")
    with layerscope.watch(act_mlp(), logdir=str(tmp_path / "run")):
        pass
    (line,) = [r for r in caplog.records if r.message.startswith("watching")]
    assert line.levelno == logging.INFO
    assert line.name == "layerscope"
    assert "watching Sequential (5 modules;" in line.message
    assert f"TensorBoard run in {tmp_path / 'run'}" in line.message


def test_an_error_finding_is_logged_once_as_an_error(caplog):
    caplog.set_level(logging.INFO, logger="layerscope")
    nan_run()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # the NaN persists for ten steps; it is logged once
    assert errors[0].message.startswith("error, step 2, 0:output: non-finite values")


def test_warning_findings_are_logged_as_warnings(caplog):
    caplog.set_level(logging.INFO, logger="layerscope")
    scope, _ = run(act_mlp(nn.ReLU, first_bias=-10.0), teacher_data(25))
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.message for r in logged] == [
        f"error, step {f.step}, {f.site}: {f.text}"
        for f in scope.findings()
        if f.severity != "info" and f.cause is None
    ]


def test_the_level_is_the_users_to_set(caplog):
    caplog.set_level(logging.WARNING, logger="layerscope")
    nan_run()
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_printed_to_stderr_when_the_program_configured_no_logging():
    code = (
        "import torch, layerscope\n"
        "m = torch.nn.Linear(2, 2)\n"
        "with layerscope.watch(m) as s:\n"
        "    m(torch.full((1, 2), float('nan'))).sum().backward(); s.step()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stderr.splitlines()
    assert lines[0].startswith("layerscope: watching Linear (1 module;")
    assert lines[1].startswith("layerscope: error, step 0, ")
    assert "non-finite values first appeared" in lines[1]
    assert len(lines) == 2
