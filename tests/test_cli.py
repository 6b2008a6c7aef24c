"""The layerscope command line, on event files written by plain torch, not by layerscope."""

import subprocess
import sys

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import layerscope
from layerscope.cli import main, report
from layerscope.sinks.events import parse_name, read_run
from layerscope.sinks.report import Report


@pytest.fixture
def foreign_run(tmp_path):
    run = tmp_path / "logs" / "exp1"
    writer = SummaryWriter(str(run))
    for step in range(5):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("train/accuracy", 0.1 * step, step)
        writer.add_scalar("lr", 0.01, step)
    writer.add_histogram("weights/fc1", torch.tensor([0.0, 0.5, 0.5, 1.0]), 3)
    writer.close()
    return tmp_path / "logs"


def test_parse_name_round_trips_our_names_and_groups_foreign_ones():
    assert parse_name("activations/fc1:output/value.mean+std") == (
        "activations",
        "fc1:output",
        "value",
        "mean+std",
    )
    assert parse_name("loss/loss.last") == ("loss", "", "loss", "last")
    assert parse_name("a/b/c/lr_0.5") == ("a", "b/c", "lr_0.5", "value")


def test_read_run_of_a_plain_summary_writer(foreign_run):
    runs = read_run(foreign_run)
    assert list(runs) == ["exp1"]
    records = runs["exp1"]
    loss = [r for r in records if r.quantity == "loss"]
    assert [(r.tag, r.step) for r in loss] == [("train", s) for s in range(5)]
    (hist,) = [r for r in records if r.histogram is not None]
    assert (hist.tag, hist.quantity, hist.step) == ("weights", "fc1", 3)
    assert hist.histogram.total == 4


def test_report_command_draws_the_scalars(foreign_run, tmp_path, capsys):
    assert main(["report", str(foreign_run), "--out", str(tmp_path / "fig")]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.rsplit("/", 1)[-1] for p in printed)
    assert names == ["lr.png", "train.png", "weights.png"]
    assert all(p.startswith(str(tmp_path / "fig" / "exp1")) for p in printed)
    fig = Report(read_run(foreign_run)["exp1"]).figure("train")
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"loss.value", "accuracy.value"}
    assert axes["loss.value"].lines[0].get_ydata().tolist() == pytest.approx(
        [1.0, 0.5, 1 / 3, 0.25, 0.2]
    )
    assert axes["accuracy.value"].lines[0].get_xdata().tolist() == [0, 1, 2, 3, 4]


def test_report_paths_and_formats(foreign_run, tmp_path):
    paths = report(foreign_run / "exp1", tmp_path, ["svg", "pdf"])
    assert sorted(p.name for p in paths) == sorted(
        f"{t}.{f}" for t in ("train", "lr", "weights") for f in ("svg", "pdf")
    )


def test_report_without_event_files_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds no TensorBoard event files" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"layerscope {layerscope.__version__}"


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "layerscope.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"layerscope {layerscope.__version__}"
