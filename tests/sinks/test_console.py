import io

from rich.console import Console
from torch import nn

from health_models import act_mlp, run, teacher_data
from layerscope.records import Record
from layerscope.sinks.console import Column, ConsoleSink, summary_rows

FINDING = Record(3, 0, "health", "fc1:output", "finding", "dead_units", 0.75)


def rich_sink():
    console = Console(record=True, width=120, color_system=None, file=io.StringIO())
    return ConsoleSink(console=console), console


def test_findings_printed_once_as_they_arrive():
    sink, console = rich_sink()
    sink.write([FINDING])
    first = console.export_text(clear=False)
    assert "warning: step 3: health: fc1:output: dead_units (0.75)" in first
    sink.write([FINDING, Record(4, 0, "health", "fc1:output", "finding", "dead_units", 0.8)])
    sink.write([Record(5, 0, "health", "fc2:hidden[t]", "finding", "vanishing", None)])
    text = console.export_text(clear=False)
    assert text.count("dead_units") == 1
    assert "fc2:hidden[t]: vanishing" in text  # brackets are not read as markup


def test_table_columns_only_for_present_quantities(records):
    sink, console = rich_sink()
    sink.write(records)
    sink.close()
    text = console.export_text(clear=False)
    assert "dead %" in text
    assert "weight grad norm" in text
    assert "active %" not in text
    assert "update / weight" not in text
    fc3 = next(line for line in text.splitlines() if "fc3" in line)
    assert "24.0%" in fc3  # dead fraction of fc3 at the last step, 0.2 + 0.04
    assert "1e-06" in fc3  # weight-gradient norm of fc3 at step 4
    assert "loss at step 4: 0.0002" in text


def test_plain_text_fallback(capsys, records):
    sink = ConsoleSink(use_rich=False)
    sink.write([FINDING, *records])
    sink.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "warning: step 3: health: fc1:output: dead_units (0.75)"
    assert out[1].split() == ["layer", "dead", "%", "weight", "grad", "norm"]
    assert out[2].split() == ["fc1", "4.0%", "0.0001"]
    assert out[-1] == "loss at step 4: 0.0002"


def test_latest_value_and_preferred_statistic():
    rs = [
        Record(1, 0, "a", "fc1:output", "dead", "fraction", 0.1),
        Record(9, 0, "a", "fc1:output", "dead", "fraction", 0.9),
        Record(2, 0, "a", "fc1:output", "dead", "mean", 0.5),
        Record(1, 0, "g", "fc1:bias.grad", "l2", "last", 7.0),
        Record(1, 0, "o", "fc1:weight", "update_ratio", "last", 1e-3),
    ]
    columns, rows = summary_rows(rs)
    assert [c.title for c in columns] == ["dead %", "update / weight"]
    assert rows == [["fc1", "90.0%", "0.001"]]


def test_custom_columns():
    column = Column("saturated", ("saturated",), ("fraction",), percent=True)
    _, rows = summary_rows([Record(0, 0, "a", "l:output", "saturated", "fraction", 0.5)], [column])
    assert rows == [["l", "50.0%"]]


def test_table_of_a_real_run_keeps_output_and_gradient_death_apart():
    # 1:output (a ReLU behind a bias of -10) is all dead; its output gradient is not.
    out = io.StringIO()
    run(
        act_mlp(nn.ReLU, first_bias=-10.0),
        teacher_data(25),
        sinks=[ConsoleSink(use_rich=False, stream=out)],
    )
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    header = lines[start].split("  ")
    assert [h.strip() for h in header if h.strip()] == [
        "layer",
        "active %",
        "dead %",
        "no gradient %",
        "weight grad norm",
        "update / weight",
    ]
    table = {line.split()[0]: line.split()[1:] for line in lines[start + 1 : start + 6]}
    assert list(table) == ["0", "1", "2", "3", "4"]  # model order, not record order
    assert table["1"][:3] == ["0.0%", "100.0%", "0.0%"]
    assert table["0"][:3] == ["100.0%", "0.0%", "100.0%"]  # no gradient through the ReLU
