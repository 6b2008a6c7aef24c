"""A TensorBoard event file written directly: Event protos in TFRecord framing.

TensorBoard's own writer (which ``torch.utils.tensorboard`` uses) checksums every record with
a pure-Python CRC-32C, ~150 ns a byte, on a thread that holds the GIL; a step of a hundred
scalars then costs a millisecond and more. This writer frames the records itself, with the C++
engine's CRC, synchronously: the sink writes once per flush.

Scalars, most of what is written, are encoded without protobuf objects
(:meth:`EventFile.add_scalars`): an event of scalars is a fixed layout, the bytes of each
name are encoded once per run, and building a ``Summary.Value`` per scalar cost more than the
rest of the write.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Iterable
from itertools import count
from pathlib import Path
from typing import Any

from layerscope import _core
from layerscope.sinks._optional import require

_FILE_COUNTER = count()


class EventFile:
    """Appends Summary protos to a new ``events.out.tfevents.*`` file in `logdir`.

    Example:
        >>> import tempfile
        >>> from tensorboard.compat.proto.summary_pb2 import Summary
        >>> with tempfile.TemporaryDirectory() as d:
        ...     events = EventFile(d)
        ...     events.add(Summary(value=[Summary.Value(tag="loss", simple_value=0.5)]), step=3)
        ...     events.close()
        ...     events.path.name.startswith("events.out.tfevents.")
        True

    """

    def __init__(self, logdir: str | Path) -> None:
        self._event_pb2 = require("tensorboard.compat.proto.event_pb2", "tensorboard", "EventFile")
        Path(logdir).mkdir(parents=True, exist_ok=True)
        name = (
            f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}."
            f"{next(_FILE_COUNTER)}"
        )
        self.path = Path(logdir) / name
        self._file = open(self.path, "ab")  # noqa: SIM115 - open for the sink's whole run
        self._scalar_prefixes: dict[str, bytes] = {}
        self._write_event(
            self._event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        )
        self.flush()

    def add(self, summary: Any, step: int) -> None:  # noqa: ANN401 - a tensorboard Summary proto
        """Append one event holding `summary` at global step `step`."""
        self._write_event(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def add_scalars(self, step: int, scalars: Iterable[tuple[str, float]]) -> None:
        """Append one event holding ``(name, value)`` scalars (``simple_value``) at `step`.

        The bytes are those protobuf writes for
        ``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)...]))``.
        """
        entries = []
        for name, value in scalars:
            prefix = self._scalar_prefixes.get(name)
            if prefix is None:
                prefix = self._scalar_prefixes[name] = _scalar_prefix(name)
            entries.append(prefix + _float32(value))
        summary = b"".join(entries)
        self._write_record(
            b"\x09"  # Event.wall_time, a double
            + struct.pack("<d", time.time())
            + b"\x10"  # Event.step, a varint
            + _varint(step)
            + b"\x2a"  # Event.summary, length-delimited
            + _varint(len(summary))
            + summary
        )

    def flush(self) -> None:
        """Hand what was written to the operating system (readers see it)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file; later calls do nothing."""
        if not self._file.closed:
            self._file.close()

    def _write_event(self, event: Any) -> None:  # noqa: ANN401
        self._write_record(event.SerializeToString())

    def _write_record(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._file.write(
            header
            + struct.pack("<I", _core.masked_crc32c(header))
            + data
            + struct.pack("<I", _core.masked_crc32c(data))
        )


def _varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _scalar_prefix(name: str) -> bytes:
    """Summary.value entry of a scalar named `name`, up to its 4-byte float."""
    tag = name.encode()
    value = b"\x0a" + _varint(len(tag)) + tag + b"\x15"  # Value.tag; Value.simple_value: fixed32
    return b"\x0a" + _varint(len(value) + 4) + value  # Summary.value, length-delimited


def _float32(value: float) -> bytes:
    """`value` as a little-endian float32; beyond float32's range, ±infinity (as a cast does)."""
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))
