import json

import pandas as pd
import pytest
from fakes import make_rows, write_jsonl

from components.common.dataset import (
    DatasetError,
    assign_split,
    build_snapshot,
    read_snapshot,
    write_snapshot,
)


def test_reads_jsonl_csv_and_parquet_with_custom_columns(tmp_path):
    rows = [{"body": r["text"], "intent": r["label"]} for r in make_rows(60)]
    write_jsonl(rows, tmp_path / "d.jsonl")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    snaps = [build_snapshot(tmp_path / f"d.{ext}", "body", "intent") for ext in ("jsonl", "csv", "parquet")]
    assert snaps[0] == snaps[1] == snaps[2]
    assert snaps[0].label_names == ["money", "sports", "weather"]


def test_snapshot_roundtrip(tmp_path):
    snap = build_snapshot(write_jsonl(make_rows(50), tmp_path / "d.jsonl"))
    write_snapshot(snap, tmp_path / "snap.jsonl")
    assert read_snapshot(tmp_path / "snap.jsonl") == snap


def test_split_is_deterministic_and_stable_under_appends(tmp_path):
    rows = make_rows(200)
    first = build_snapshot(write_jsonl(rows, tmp_path / "a.jsonl"))
    grown = build_snapshot(write_jsonl(rows + make_rows(50, seed=1), tmp_path / "b.jsonl"))
    assert grown.splits[:200] == first.splits
    shuffled = build_snapshot(write_jsonl(rows[::-1], tmp_path / "c.jsonl"))
    assert dict(zip(shuffled.texts, shuffled.splits, strict=True)) == dict(zip(first.texts, first.splits, strict=True))
    share = first.splits.count("test") / len(first)
    assert 0.1 < share < 0.3


def test_split_fractions_route_by_hash():
    splits = [assign_split(f"text {i}", "salt", 0.1, 0.2) for i in range(5000)]
    assert abs(splits.count("test") / 5000 - 0.2) < 0.03
    assert abs(splits.count("validation") / 5000 - 0.1) < 0.03


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        (None, {}, r"missing\.jsonl: data file not found"),
        ('{"text": "a b", "label": "x"}\n', {"label_column": "intent"},
         r"column 'intent' not found; columns present: label, text"),
        ("", {}, "no rows"),
        ('{"text": "fine", "label": "x"}\n{"text": "", "label": "y"}\n', {}, r"line 2: column 'text' is empty"),
        ('{"text": "fine", "label": "x"}\n{"text": "ok", "label": ""}\n', {}, r"line 2: column 'label' is empty"),
        ('{"text": "fine", "label": "x"}\n{"text": 3, "label": "y"}\n', {}, r"line 2: column 'text' must be text, got int 3"),
        ('{"text": "fine", "label": "x"}\n{"text": null, "label": "y"}\n', {}, r"line 2: column 'text' is missing or null"),
        ('{"text": "fine", "label": "x"}\nnot json\n', {}, r"line 2: not valid JSON"),
        ('{"text": "fine", "label": "cat"}\n', {"allowed_labels": ("x", "y")},
         r"line 1: unknown label 'cat'; expected one of x, y"),
    ],
)
def test_bad_input_errors_name_file_row_and_value(tmp_path, content, kwargs, message):
    path = tmp_path / "missing.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        build_snapshot(path, **kwargs)


def test_undecodable_text_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl line 2: text is not valid UTF-8"):
        build_snapshot(path)


def test_unknown_format_and_too_few_rows(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown format '.txt'"):
        build_snapshot(tmp_path / "d.txt")
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"text": "only", "label": "x"}) + "\n")
    with pytest.raises(DatasetError, match="too few to split"):
        build_snapshot(one)
