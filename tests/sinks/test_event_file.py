"""EventFile against TensorBoard's own reader, which checks every record's CRC-32C."""

from __future__ import annotations

import math
import time

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.compat.proto.event_pb2 import Event  # noqa: E402
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


def test_scalars_encoded_by_hand_read_back_as_protobuf_wrote_them(tmp_path):
    long_name = "encoder.layers.0/" * 10 + "l2.last"  # a name over 127 bytes: 2-byte length
    scalars = [("loss", 0.25), (long_name, -3.5), ("nan", math.nan), ("big", 1e300)]
    events = EventFile(tmp_path)
    events.add_scalars(7, scalars)
    events.add_scalars(2**40 + 3, [("loss", 1.0)])
    events.add(Summary(value=[Summary.Value(tag="loss", simple_value=0.125)]), step=9)
    events.close()
    read = list(EventFileLoader(str(events.path)).Load())
    assert [e.step for e in read[1:]] == [7, 2**40 + 3, 9]
    values = _values(read[1])
    assert [tag for tag, _ in values] == ["loss", long_name, "nan", "big"]
    assert values[0][1] == [0.25]
    assert values[1][1] == [-3.5]
    assert math.isnan(values[2][1][0])
    assert values[3][1] == [math.inf]
    assert _values(read[3]) == [("loss", [0.125])]
    assert read[1].wall_time == pytest.approx(time.time(), abs=60)
    expected = Event(
        wall_time=read[1].wall_time,
        step=7,
        summary=Summary(
            value=[
                Summary.Value(tag=t, simple_value=math.inf if v == 1e300 else v) for t, v in scalars
            ]
        ),
    )
    # Byte for byte what protobuf writes (the reader above converts scalars to tensors).
    raw = events.path.read_bytes()
    assert expected.SerializeToString() in raw


def test_two_files_in_one_directory_do_not_collide(tmp_path):
    first, second = EventFile(tmp_path), EventFile(tmp_path)
    assert first.path != second.path
    first.close()
    second.close()
