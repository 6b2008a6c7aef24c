"""Records as a pandas DataFrame, CSV or Parquet file, and a sink that collects them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from layerscope.record_columns import RecordColumns
from layerscope.records import RECORD_COLUMNS, Record, records_to_rows
from layerscope.sinks._optional import require

if TYPE_CHECKING:
    import pandas as pd

_DTYPES = {
    "step": "int64",
    "epoch": "int64",
    "tag": "string",
    "site": "string",
    "quantity": "string",
    "statistic": "string",
    "value": "float64",
    "text": "string",  # a finding's message and suggestion; missing (<NA>) on other records
}


def to_pandas(records: Sequence[Record] | RecordColumns) -> pd.DataFrame:
    """Return the scalar records as a DataFrame with columns :data:`RECORD_COLUMNS`.

    Histogram records are left out (their distributions do not fit one cell). Health findings
    keep their message and suggestion in ``text``, missing on the other records. Records kept
    as :class:`~layerscope.record_columns.RecordColumns` (``scope.to_pandas()``) become the
    frame's columns directly, with no object per record.

    Example:
        >>> df = to_pandas([Record(2, 0, "loss", "", "loss", "last", 0.5)])
        >>> list(df.columns) == list(RECORD_COLUMNS), float(df.value[0])
        (True, 0.5)

    """
    pandas = require("pandas", "pandas", "to_pandas")
    if not isinstance(records, RecordColumns):
        frame = pandas.DataFrame(records_to_rows(records), columns=list(RECORD_COLUMNS))
        return frame.astype(_DTYPES)
    scalar = np.equal(records.histogram, None)
    columns = {name: getattr(records, name)[scalar] for name in RECORD_COLUMNS}
    columns["value"] = np.where(records.valued[scalar], columns["value"], np.nan)
    return pandas.DataFrame(columns).astype(_DTYPES)


def to_csv(records: Sequence[Record], path: str | Path) -> Path:
    """Write the scalar records to a CSV file with a header row; return its path."""
    out = Path(path)
    to_pandas(records).to_csv(out, index=False)
    return out


def to_parquet(records: Sequence[Record], path: str | Path) -> Path:
    """Write the scalar records to a Parquet file (needs pyarrow); return its path."""
    require("pyarrow", "pandas", "to_parquet")
    out = Path(path)
    to_pandas(records).to_parquet(out, index=False)
    return out


class DataFrameSink:
    """Collects records; ``frame`` is the table so far, written to ``path`` on close if given.

    Args:
        path: a ``.csv`` or ``.parquet`` file to write on close, or None to keep it in memory.

    Example:
        >>> sink = DataFrameSink()
        >>> sink.write([Record(0, 0, "loss", "", "loss", "last", 1.5)])
        >>> sink.close()
        >>> sink.frame.shape
        (1, 8)

    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None and Path(path).suffix not in (".csv", ".parquet"):
            raise ValueError(
                f"DataFrameSink: path must end in .csv or .parquet (or be None), got {path!r}"
            )
        require("pandas", "pandas", "DataFrameSink")
        self.path = None if path is None else Path(path)
        self.records: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        """Keep the records."""
        self.records.extend(records)

    @property
    def frame(self) -> pd.DataFrame:
        """The records so far as a DataFrame."""
        return to_pandas(self.records)

    def close(self) -> None:
        """Write the table to ``path``, if one was given."""
        if self.path is None:
            return
        if self.path.suffix == ".csv":
            to_csv(self.records, self.path)
        else:
            to_parquet(self.records, self.path)
