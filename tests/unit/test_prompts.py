"""Prompt datasets for task: generation: located errors, optional responses, the hash split, dedup."""

from __future__ import annotations

import json

import pytest

from components.common.config import DataConfig
from components.common.dataset import DatasetError, assign_split
from components.common.prompts import build_prompt_snapshot, read_prompt_snapshot, write_prompt_snapshot
from pipelines.quickstart_prompts import generate_prompts, write_quickstart_prompts


def _write(tmp_path, rows, name="prompts.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _rows(n=60, response=True):
    return [{"prompt": f"reply to customer message number {i}", **({"response": f"answer {i}"} if response else {})}
            for i in range(n)]


def test_snapshot_splits_by_prompt_and_round_trips(tmp_path):
    d = DataConfig()
    snap, report = build_prompt_snapshot(_write(tmp_path, _rows()), d)
    assert len(snap) == 60 and snap.references == 60 and report["responses"] == 60
    for p, s in zip(snap.prompts, snap.splits, strict=True):
        assert s == assign_split(p, d.split_salt, d.validation_fraction, d.test_fraction)
    write_prompt_snapshot(snap, tmp_path / "snap.jsonl")
    assert read_prompt_snapshot(tmp_path / "snap.jsonl") == snap


def test_appending_prompts_keeps_every_split(tmp_path):
    d = DataConfig()
    a, _ = build_prompt_snapshot(_write(tmp_path, _rows(40), "a.jsonl"), d)
    b, _ = build_prompt_snapshot(_write(tmp_path, _rows(80), "b.jsonl"), d)
    assert b.splits[:40] == a.splits


def test_responses_are_optional_per_file_and_per_row(tmp_path):
    snap, report = build_prompt_snapshot(_write(tmp_path, _rows(response=False)), DataConfig())
    assert not snap.references == 60 and report["responses"] == 0
    rows = _rows()
    rows[3]["response"] = None
    rows[4]["response"] = "  "
    snap, report = build_prompt_snapshot(_write(tmp_path, rows, "b.jsonl"), DataConfig())
    assert report["responses"] == 58 and snap.responses[3] is None


def test_near_duplicate_prompts_are_kept_once(tmp_path):
    rows = _rows() + [{"prompt": "Reply to customer message number 1.", "response": "x"}]
    snap, report = build_prompt_snapshot(_write(tmp_path, rows), DataConfig())
    assert len(snap) == 60 and report["duplicate_prompts_dropped"] == 1


@pytest.mark.parametrize("bad,match", [
    ({"prompt": ""}, r"line 3: column 'prompt' is empty"),
    ({"prompt": 5}, r"line 3: column 'prompt' must be text"),
    ({"prompt": "ok", "response": 7}, r"line 3: column 'response' must be text, got int 7"),
    ({"prompt": "a\x00b"}, r"line 3: column 'prompt' contains a NUL"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, bad, match):
    rows = _rows(2) + [bad] + _rows(40)[2:]
    with pytest.raises(DatasetError, match=match):
        build_prompt_snapshot(_write(tmp_path, rows), DataConfig())


def test_a_missing_prompt_column_names_the_columns_present(tmp_path):
    with pytest.raises(DatasetError, match="column 'prompt' not found; columns present: question"):
        build_prompt_snapshot(_write(tmp_path, [{"question": "x"}]), DataConfig())


def test_long_prompts_follow_the_data_policy(tmp_path):
    rows = [{"prompt": f"message {i}: reply"} for i in range(60)]
    rows[0]["prompt"] = "x" * 50
    snap, report = build_prompt_snapshot(_write(tmp_path, rows), DataConfig(max_text_chars=30))
    assert report["truncated_texts"] == 1 and snap.prompts[0] == "x" * 30
    with pytest.raises(DatasetError, match="line 1: column 'prompt' has 50 characters"):
        build_prompt_snapshot(_write(tmp_path, rows, "b.jsonl"), DataConfig(max_text_chars=30, long_texts="error"))


def test_quickstart_prompts_are_deterministic_and_split(tmp_path):
    assert generate_prompts(50) == generate_prompts(50)
    path = write_quickstart_prompts(tmp_path / "q.jsonl")
    snap, report = build_prompt_snapshot(path, DataConfig())
    assert report["prompts"] >= 390 and set(snap.splits) == {"train", "validation", "test"}


def test_required_responses_name_the_rows_without_one(tmp_path):
    rows = _rows(10)
    rows[2]["response"], rows[7]["response"] = "", None
    with pytest.raises(DatasetError, match=r"pairs.jsonl: 2 of 10 rows have no response in column 'response' "
                                           r"\(line 3, line 8\)"):
        build_prompt_snapshot(_write(tmp_path, rows, "pairs.jsonl"), DataConfig(), require_responses=True)
    with pytest.raises(DatasetError, match=r"prompts.jsonl: no column 'answer'; every row needs a response"):
        build_prompt_snapshot(_write(tmp_path, _rows(10)), DataConfig(), response_column="answer",
                              require_responses=True)
    snap, _ = build_prompt_snapshot(_write(tmp_path, rows, "optional.jsonl"), DataConfig())
    assert snap.responses.count(None) == 2  # optional without the flag
