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
    assert (
        main(["report", str(foreign_run), "--out", str(tmp_path / "fig"), "--format", "png"]) == 0
    )
    printed = capsys.readouterr().out.split()
    names = sorted(p.rsplit("/", 1)[-1] for p in printed)
    assert names == ["lr.png", "train.png", "weights.png"]
    assert all(p.startswith(str(tmp_path / "fig" / "exp1")) for p in printed)
    fig = Report(read_run(foreign_run)["exp1"]).figure("train")
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"Loss", "Accuracy"}
    assert axes["Loss"].lines[0].get_ydata().tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert axes["Accuracy"].lines[0].get_xdata().tolist() == [0, 1, 2, 3, 4]


def test_report_paths_and_formats(foreign_run, tmp_path):
    paths, failed = report(foreign_run / "exp1", tmp_path, ["svg", "pdf"], say=print)
    assert failed == []
    assert sorted(p.name for p in paths) == sorted(
        f"{t}.{f}" for t in ("train", "lr", "weights") for f in ("svg", "pdf")
    )


def test_report_without_event_files_is_an_error(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a run")
    assert main(["report", str(tmp_path)]) == 1  # a run-time error, not bad usage
    assert "holds no TensorBoard event files" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


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


def scalar_run(directory, steps=3):
    writer = SummaryWriter(str(directory))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()


def test_report_walks_only_run_dirs(tmp_path, capsys):
    scalar_run(tmp_path / "a")
    scalar_run(tmp_path / "deep" / "b")
    (tmp_path / "not_a_run" / "sub").mkdir(parents=True)
    (tmp_path / "not_a_run" / "sub" / "data.csv").write_text("1,2")
    scalar_run(tmp_path / ".hidden" / "c")
    scalar_run(tmp_path / ".venv" / "lib" / "d")
    scalar_run(tmp_path / "elsewhere")
    (tmp_path / "deep" / "link").symlink_to(tmp_path / "elsewhere")
    out = tmp_path / "out"
    assert main(["report", str(tmp_path), "--out", str(out), "--max-runs", "3"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/report.html", "deep/b/report.html", "elsewhere/report.html"]
    assert not (tmp_path / "not_a_run" / "sub" / "report").exists()
    captured = capsys.readouterr()
    assert captured.out.split() == [str(out / w) for w in written]  # stdout: paths only
    assert captured.err.splitlines()[0] == (
        f"layerscope report: 3 run(s) under {tmp_path}; writing html to {out}"
    )
    assert "[2/3] deep/b: 1 file(s)" in captured.err


def test_report_refuses_more_runs_than_max_runs(tmp_path, capsys):
    for name in "abc":
        scalar_run(tmp_path / name)
    assert main(["report", str(tmp_path), "--max-runs", "2"]) == 1
    err = capsys.readouterr().err
    assert "holds 3 runs (a, b, c, ...), more than --max-runs 2" in err
    assert "--max-runs 3" in err
    assert not (tmp_path / "report").exists()


def test_a_malformed_run_does_not_stop_the_others(tmp_path, capsys):
    scalar_run(tmp_path / "good")
    writer = SummaryWriter(str(tmp_path / "broken"))
    writer.add_scalar("loss", 0.5, 0)
    nan_min = {"min": float("nan"), "max": 1.0, "num": 3, "sum": 1.0, "sum_squares": 1.0}
    writer.add_histogram_raw("w", **nan_min, bucket_limits=[0.5, 1.0], bucket_counts=[1, 2])
    writer.add_histogram_raw(
        "v", 0.0, 1.0, 3, 1.0, 1.0, bucket_limits=[0.5, 1.0], bucket_counts=[1, 2]
    )
    writer.close()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out"), "--format", "png"]) == 0
    out = capsys.readouterr().out.split()
    names = sorted(p.split(str(tmp_path / "out") + "/")[1] for p in out)
    assert names == ["broken/loss.png", "broken/v.png", "good/loss.png"]


def test_a_run_with_nothing_to_plot_fails_loudly(tmp_path, capsys):
    writer = SummaryWriter(str(tmp_path / "notes"))
    writer.add_text("note", "hello", 0)
    writer.close()
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "notes: nothing to plot (no scalars or histograms)" in err
    assert "1 run(s) not rendered" in err


def test_help_is_plain_text_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text
    assert ":func:" not in text
    assert "(default: 20)" in text
    assert "(default: RUN_DIR/report)" in text
    assert "(default: None)" not in text


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--max-runs", "many", "x"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_demo_without_scikit_learn_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what an environment without it gives
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["demo", "--out", str(tmp_path), "--steps", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "needs scikit-learn" in err
    assert "pip install 'layerscope[all]'" in err
