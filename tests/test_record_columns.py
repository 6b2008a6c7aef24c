"""Records as columns: the same records as Record tuples, kept and thinned as the list was."""

from __future__ import annotations

import gc
import math
import random

import pytest

from layerscope import history
from layerscope.history import RecordHistory
from layerscope.record_columns import RecordColumns
from layerscope.records import HistogramValue, Record
from layerscope.sinks.table import to_pandas
from layerscope.vocabulary import FINDING


def comparable(records):
    """Records with NaN values made equal to each other (NaN != NaN inside tuples)."""
    return [
        r._replace(value="nan") if isinstance(r.value, float) and math.isnan(r.value) else r
        for r in records
    ]


def sample_records() -> list[Record]:
    histogram = HistogramValue(edges=(0.0, 1.0, 2.0), counts=(3, 4), underflow=1)
    return [
        Record(3, 1, "activations", "fc1:output", "value", "mean", 0.25),
        Record(3, 1, "activations", "fc1:output", "value", "std", math.nan),
        Record(3, 1, "activations", "fc1:output", "value", "max", math.inf),
        Record(3, 1, "distributions", "fc1:output", "value", "histogram", None, histogram),
        Record(3, 1, "health", "fc1:output", FINDING, "dead_units", 2.0, text="fc1 is dead"),
        Record(4, 1, "loss", "", "loss", "last", -1e-300),
    ]


def test_columns_give_back_the_records_they_were_made_of():
    records = sample_records()
    columns = RecordColumns.from_records(records)
    assert len(columns) == len(records)
    assert comparable(columns) == comparable(records)
    assert comparable([columns[i] for i in range(len(records))]) == comparable(records)
    assert columns[3].value is None
    assert columns[3].histogram == records[3].histogram
    assert columns[4].text == "fc1 is dead"
    assert RecordColumns.empty().records() == []


def test_concat_joins_columns_and_lists_of_records_in_order():
    records = sample_records()
    columns = RecordColumns.concat(
        [RecordColumns.from_records(records[:2]), records[2:4], [], records[4:]]
    )
    assert comparable(columns) == comparable(records)
    assert comparable(columns[1:4]) == comparable(records[1:4])
    assert comparable([columns[-1]]) == comparable(records[-1:])


def test_the_frame_of_columns_is_the_frame_of_records():
    records = sample_records()
    by_columns = to_pandas(RecordColumns.from_records(records))
    by_records = to_pandas(records)
    assert by_columns.equals(by_records)
    assert list(by_columns.dtypes) == list(by_records.dtypes)


class ListHistory:
    """The record history as a list of Record tuples: the reference the columns must match."""

    def __init__(self, limit: int) -> None:
        self.limit, self.stride, self.records = limit, 1, []

    def extend(self, records):
        for r in records:
            if self.records and r.step != self.records[-1].step:
                last = self.records[-1].step
                if last % self.stride:
                    self.records = [
                        x for x in self.records if x.step != last or x.quantity == FINDING
                    ]
            self.records.append(r)
        while len(self.records) > self.limit and self.stride < 2**40:
            self.stride *= 2
            newest = self.records[-1].step
            self.records = [
                x
                for x in self.records
                if x.step % self.stride == 0 or x.quantity == FINDING or x.step == newest
            ]


@pytest.mark.parametrize("tail", [1, 7, 4096])
@pytest.mark.parametrize("limit", [1, 7, 50, 300])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_history_thins_as_the_list_of_records_did(limit, seed, tail, monkeypatch):
    monkeypatch.setattr(history, "TAIL_RECORDS", tail)  # records join the columns that often
    rng = random.Random(seed)
    columns, reference = RecordHistory(limit=limit), ListHistory(limit)
    step = 0
    for _ in range(150):
        batch = []
        for _ in range(rng.choice([1, 1, 2, 3])):  # sometimes several steps in one call
            for i in range(rng.randint(0, 9)):
                finding = rng.random() < 0.05
                quantity = FINDING if finding else "q"
                batch.append(Record(step, 0, "t", f"s{i}", quantity, "last", float(i)))
            step += 1
        cut = rng.randint(0, len(batch))  # a step may come in two calls (its late values)
        for part in (batch[:cut], batch[cut:]):
            columns.extend(part)
            reference.extend(part)
            if rng.random() < 0.2:  # a read in the middle of the run, mid-step too
                assert comparable(columns.columns()) == comparable(reference.records)
        assert len(columns) == len(reference.records)
        assert columns.stride == reference.stride
    assert list(columns) == reference.records
    assert list(columns.columns()) == reference.records


def test_the_histories_newest_records_leave_the_garbage_collector_alone():
    """Records waiting in the tail are untracked by the collector once it has seen them.

    A NamedTuple stays tracked all its life: thousands living a few dozen steps each are what
    brings on full collections (a pause of tens of milliseconds in a large process).
    """
    kept = RecordHistory(limit=100_000)
    gc.collect()
    before = sum(type(o) is Record or type(o) is tuple for o in gc.get_objects())
    kept.extend(
        Record(step, 0, "loss", "", "loss", "last", float(step), None, None)
        for step in range(history.TAIL_RECORDS // 2)
    )
    gc.collect()
    after = sum(type(o) is Record or type(o) is tuple for o in gc.get_objects())
    assert len(kept) == history.TAIL_RECORDS // 2
    assert after - before < 10
    assert [r.value for r in kept][-3:] == [float(s) for s in range(2045, 2048)]
    assert all(type(r) is Record for r in kept)
