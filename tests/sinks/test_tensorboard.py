import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

from layerscope.records import HistogramValue, Record
from layerscope.sinks.tensorboard import TensorBoardSink, histogram_summary
from sink_records import SITES, STEPS, activation_value


def load(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def written(tmp_path, records, batches=1):
    sink = TensorBoardSink(tmp_path)
    by_step = sorted({r.step for r in records})
    chunks = [by_step[i::batches] for i in range(batches)] if batches > 1 else [by_step]
    for chunk in chunks:
        sink.write([r for r in records if r.step in chunk])
    sink.close()
    return load(tmp_path)


def test_scalars_named_by_module_then_pytorch_name_at_record_step(tmp_path, records):
    acc = written(tmp_path, records)
    tags = set(acc.Tags()["scalars"])
    assert "loss" in tags
    assert "model.fc2/output.mean" in tags
    assert "model.fc3/weight.grad.l2" in tags
    events = acc.Scalars("model.fc2/output.max")
    assert [e.step for e in events] == list(STEPS)
    expected = [activation_value(1, s, "max") for s in STEPS]
    assert [e.value for e in events] == pytest.approx(expected, rel=1e-6)
    loss = acc.Scalars("loss")
    assert [e.value for e in loss] == pytest.approx([2.0 * 10.0 ** (-s) for s in STEPS], rel=1e-6)


def test_no_helper_scalars_and_fields_read_back(tmp_path, records):
    from layerscope.sinks.events import read_run

    acc = written(tmp_path, records)
    assert not [t for t in acc.Tags()["scalars"] if "mean-std" in t or "mean+std" in t]
    (back,) = read_run(tmp_path).values()
    scalars = [r for r in records if r.histogram is None and r.value is not None]
    assert {r[:6] for r in back if r.histogram is None} == {(r.step, 0, *r[2:6]) for r in scalars}


def test_two_lenses_recording_the_same_thing_keep_apart(tmp_path):
    acc = written(
        tmp_path,
        [
            Record(0, 0, "activations", "fc1:output", "value", "mean", 1.0),
            Record(0, 0, "mine", "fc1:output", "value", "mean", 2.0),
        ],
    )
    assert sorted(acc.Tags()["scalars"]) == [
        "model.fc1/output.mean",
        "model.fc1/output.mean (mine)",
    ]
    assert acc.Scalars("model.fc1/output.mean (mine)")[0].value == 2.0


def test_histogram_buckets_from_edges_and_counts(tmp_path, records):
    acc = written(tmp_path, records)
    events = acc.Histograms("model.fc3/output.histogram")
    assert [e.step for e in events] == list(STEPS)
    h = events[2].histogram_value  # step 2, site index 2: counts (2, 8, 3) over -1, 0, 1, 2
    assert list(h.bucket) == [2, 8, 3]
    assert list(h.bucket_limit) == [0.0, 1.0, 2.0]
    assert (h.min, h.max, h.num) == (-1.0, 2.0, 13)
    assert h.sum == pytest.approx(2 * -0.5 + 8 * 0.5 + 3 * 1.5)
    assert h.sum_squares == pytest.approx(2 * 0.25 + 8 * 0.25 + 3 * 2.25)
    first = acc.Histograms("model.fc1/output.histogram")[0].histogram_value
    assert list(first.bucket) == [10, 1]  # the empty first bin is trimmed
    assert first.min == 0.0


def test_histogram_summary_under_and_overflow():
    h = HistogramValue(edges=(0.0, 1.0, 2.0), counts=(1, 1), underflow=3, overflow=4)
    s = histogram_summary(h)
    assert s["bucket_counts"] == [3, 1, 1, 4]
    assert s["bucket_limits"] == [0.0, 1.0, 2.0, 3.0]
    assert (s["min"], s["max"], s["num"]) == (-1.0, 3.0, 9)
    assert histogram_summary(HistogramValue(edges=(0.0, 1.0), counts=(0,))) is None


def layout_of(acc):
    events = acc.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout()
    layout.ParseFromString(events[-1].tensor_proto.string_val[0])
    return layout, len(events)


def test_custom_scalars_layout_has_margin_charts_per_site(tmp_path, records):
    acc = written(tmp_path, records, batches=3)
    layout, count = layout_of(acc)
    assert count == 1  # every site arrived in the first flush: the layout is written once
    categories = {c.title: c for c in layout.category}
    assert set(categories) == {"activations"}  # loss and gradients have no bands
    charts = {c.title: c for c in categories["activations"].chart}
    assert set(charts) == {"model." + s.replace(":", "/") for s in SITES}
    series = [(s.value, s.lower, s.upper) for s in charts["model.fc2/output"].margin.series]
    prefix = "model.fc2/output."
    assert series == [
        (prefix + "median", prefix + "q25", prefix + "q75"),
        (prefix + "mean", prefix + "min", prefix + "max"),
    ]
    every_tag = set(acc.Tags()["scalars"])
    assert all(name in every_tag for s in series for name in s)


def test_layout_rewritten_when_a_new_site_arrives(tmp_path):
    sink = TensorBoardSink(tmp_path)
    for step, site in ((0, "a:output"), (1, "a:output"), (2, "b:output")):
        sink.write([Record(step, 0, "t", site, "value", s, float(step)) for s in ("min", "max")])
    sink.close()
    layout, count = layout_of(load(tmp_path))
    assert count == 2
    titles = [c.title for c in layout.category[0].chart]
    assert titles == ["model.a/output", "model.b/output"]
    assert json.dumps(titles)


def test_bad_arguments_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="logdir"):
        TensorBoardSink("")
    sink = TensorBoardSink(tmp_path)
    sink.close()
    with pytest.raises(RuntimeError, match="closed"):
        sink.write([])
