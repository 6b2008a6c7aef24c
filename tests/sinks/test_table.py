import pandas as pd
import pytest

from layerscope.records import RECORD_COLUMNS, Record
from layerscope.sinks.table import DataFrameSink, to_csv, to_pandas, to_parquet


def test_frame_has_record_columns_and_values(records):
    df = to_pandas(records)
    assert tuple(df.columns) == RECORD_COLUMNS
    scalars = [r for r in records if r.histogram is None]
    assert len(df) == len(scalars)
    assert df["value"].tolist() == pytest.approx([r.value for r in scalars])
    assert df["site"].tolist() == [r.site for r in scalars]
    assert str(df["step"].dtype) == "int64"
    row = df[(df.tag == "gradients") & (df.site == "fc2:weight.grad") & (df.step == 3)]
    assert row["value"].tolist() == pytest.approx([1e-4])


def test_empty_frame_keeps_columns():
    df = to_pandas([])
    assert tuple(df.columns) == RECORD_COLUMNS
    assert len(df) == 0


def test_csv_and_parquet_round_trip(tmp_path, records):
    expected = to_pandas(records)
    from_csv = pd.read_csv(to_csv(records, tmp_path / "r.csv"), keep_default_na=False)
    assert from_csv["value"].tolist() == pytest.approx(expected["value"].tolist())
    assert from_csv["site"].tolist() == expected["site"].tolist()
    from_parquet = pd.read_parquet(to_parquet(records, tmp_path / "r.parquet"))
    pd.testing.assert_frame_equal(from_parquet, expected)


def test_sink_collects_and_writes_on_close(tmp_path, records):
    sink = DataFrameSink(tmp_path / "out.parquet")
    sink.write(records[:5])
    assert len(sink.frame) == 5
    sink.write(records[5:])
    sink.close()
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == len(to_pandas(records))


def test_sink_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        DataFrameSink(tmp_path / "out.xlsx")


def test_nan_values_survive():
    df = to_pandas([Record(0, 0, "loss", "", "loss", "last", float("nan"))])
    assert df["value"].isna().tolist() == [True]


def test_finding_text_survives():
    finding = Record(4, 0, "health", "fc1:output", "finding", "dead_units", 3.0, text="dead; fix")
    df = to_pandas([Record(4, 0, "loss", "", "loss", "last", 0.5), finding])
    assert df["text"].isna().tolist() == [True, False]
    assert df["text"].tolist()[1] == "dead; fix"
