"""Fixtures of the sink tests; the records themselves live in tests/sink_records.py."""

from sink_records import records

__all__ = ["records"]
