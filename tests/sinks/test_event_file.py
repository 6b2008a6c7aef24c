"""EventFile against TensorBoard's own reader, which checks every record's CRC-32C."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.compat.proto.summary_pb2 import Summary  # noqa: E402

from layerscope.sinks.event_file import EventFile  # noqa: E402


def _values(event):
    return [(v.tag, list(v.tensor.float_val)) for v in event.summary.value]


def test_events_read_back_and_a_corrupted_record_is_refused(tmp_path):
    events = EventFile(tmp_path)
    for step in range(3):
        values = [Summary.Value(tag=t, simple_value=step * k) for t, k in (("a", 0.5), ("b", -1))]
        events.add(Summary(value=values), step=step)
    events.close()
    events.close()  # a second close does nothing
    read = list(EventFileLoader(str(events.path)).Load())
    assert read[0].file_version == "brain.Event:2"
    assert [e.step for e in read[1:]] == [0, 1, 2]
    assert _values(read[2]) == [("a", [0.5]), ("b", [-1.0])]
    data = bytearray(events.path.read_bytes())
    data[-6] ^= 0xFF  # inside the last record's payload: its checksum no longer matches
    events.path.write_bytes(bytes(data))
    assert [e.step for e in EventFileLoader(str(events.path)).Load()][1:] == [0, 1]


def test_two_files_in_one_directory_do_not_collide(tmp_path):
    first, second = EventFile(tmp_path), EventFile(tmp_path)
    assert first.path != second.path
    first.close()
    second.close()
