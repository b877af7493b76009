"""Prompt files for task: generation read by the one builder (dataset.build_prompt_snapshot) beyond
test_prompt_dataset.py: the split is a function of each prompt (appending rows moves none), responses
are optional per file and row unless required (a teacher's fine-tuning pairs), repeated prompts are
kept in one split, and the quickstart prompts."""

from __future__ import annotations

import json

import pytest

from components.common.config import DataConfig, GenerationConfig
from components.common.dataset import DatasetError, assign_split, build_prompt_snapshot
from pipelines.quickstart_prompts import generate_prompts, write_quickstart_prompts


def _write(tmp_path, rows, name="prompts.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _rows(n=60, response=True):
    return [{"prompt": f"reply to customer message number {i}", **({"response": f"answer {i}"} if response else {})}
            for i in range(n)]


def _build(path, data=None, require_responses=False, **generation):
    return build_prompt_snapshot(path, GenerationConfig(**generation), data or DataConfig(),
                                 require_responses=require_responses)


def test_each_prompt_gets_its_hash_split_and_appending_rows_moves_none(tmp_path):
    d = DataConfig()
    snap, report = _build(_write(tmp_path, _rows()), d)
    assert len(snap) == 60 and snap.references == 60 and report["references"] == 60
    for p, s in zip(snap.prompts, snap.splits, strict=True):
        assert s == assign_split(p, d.split_salt, d.validation_fraction, d.test_fraction)
    a, _ = _build(_write(tmp_path, _rows(40), "a.jsonl"))
    b, _ = _build(_write(tmp_path, _rows(80), "b.jsonl"))
    assert b.splits[:40] == a.splits
    again, _ = _build(_write(tmp_path, _rows(), "again.jsonl"))
    assert again == snap  # the same file, the same snapshot


def test_responses_are_optional_per_file_and_per_row(tmp_path):
    snap, report = _build(_write(tmp_path, _rows(response=False)))
    assert snap.references == 0 and report["references"] == 0
    rows = _rows()
    rows[3]["response"] = None
    rows[4]["response"] = "  "
    snap, report = _build(_write(tmp_path, rows, "b.jsonl"))
    assert report["references"] == 58 and snap.responses[3] is None and snap.responses[4] is None


def test_required_responses_name_the_file_column_and_rows_without_one(tmp_path):
    rows = _rows(10)
    rows[2]["response"], rows[7]["response"] = "", None
    with pytest.raises(DatasetError, match=r"pairs.jsonl: 2 of 10 rows have no response in column 'response' "
                                           r"\(line 3, line 8\); every row needs one to fine-tune on"):
        _build(_write(tmp_path, rows, "pairs.jsonl"), require_responses=True)
    many = _rows(10, response=False) + _rows(60)[10:]
    with pytest.raises(DatasetError, match=r"10 of 60 rows .* \(line 1, line 2, line 3, line 4, line 5 and 5 more\)"):
        _build(_write(tmp_path, many, "many.jsonl"), require_responses=True)
    with pytest.raises(DatasetError, match=r"prompts.jsonl: no column 'answer'; every row needs a response to "
                                           r"fine-tune on \(generation.response_column\)"):
        _build(_write(tmp_path, _rows(10)), response_column="answer", require_responses=True)
    snap, _ = _build(_write(tmp_path, rows, "optional.jsonl"))
    assert snap.responses.count(None) == 2  # optional without the flag


def test_a_missing_response_is_reported_before_a_long_text_is_refused(tmp_path):
    rows = _rows(10)
    rows[0]["prompt"], rows[5]["response"] = "x" * 50, None
    strict = DataConfig(max_text_chars=40, long_texts="error")
    with pytest.raises(DatasetError, match=r"1 of 10 rows have no response in column 'response' \(line 6\)"):
        _build(_write(tmp_path, rows), strict, require_responses=True)


def test_repeated_prompts_keep_every_row_in_one_split(tmp_path):
    """Each copy's response is a reference of its own; the hash of the normalised prompt keeps all
    copies in one split, so none leaks between train and evaluation (as version_data snapshots it)."""
    rows = _rows() + [{"prompt": "Reply to customer message number 1.", "response": "another answer"},
                      {"prompt": "reply to customer message number 2", "response": "answer 2"}]
    snap, report = _build(_write(tmp_path, rows), require_responses=True)
    assert len(snap) == 62 and snap.responses[-2:] == ["another answer", "answer 2"]
    assert snap.splits[-2:] == [snap.splits[1], snap.splits[2]]
    assert report["overlap"] == {"exact_across_splits": 0, "normalised_across_splits": 0,
                                 "exact_duplicates_within_splits": 1, "normalised_duplicates_within_splits": 2}


def test_long_responses_are_cut_and_counted_apart_from_prompts(tmp_path):
    rows = _rows()
    rows[0]["prompt"], rows[1]["response"] = "p" * 50, "r" * 50
    snap, report = _build(_write(tmp_path, rows), DataConfig(max_text_chars=40))
    assert snap.prompts[0] == "p" * 40 and snap.responses[1] == "r" * 40
    assert report["truncated_rows"] == 1 and report["truncated_responses"] == 1


def test_quickstart_prompts_are_deterministic_and_split(tmp_path):
    assert generate_prompts(50) == generate_prompts(50)
    snap, report = _build(write_quickstart_prompts(tmp_path / "q.jsonl"))
    assert len(snap) == 400 and set(snap.splits) == {"train", "validation", "test"}
    assert report["references"] == 0 and report["overlap"]["normalised_across_splits"] == 0
