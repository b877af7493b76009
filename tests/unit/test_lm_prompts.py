"""The generative benchmarks' prompt sets (benchmarks/lm_prompts.py): seeded, nested, disjoint."""

from __future__ import annotations

import json

import pytest

from benchmarks.lm_prompts import TEMPLATES, read_texts, sample_prompts, task_prompts


def _write(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in texts))


def test_the_same_seed_gives_the_same_prompts_and_a_larger_set_extends_a_smaller_one():
    texts = [f"message {i}" for i in range(50)]
    small, large = sample_prompts("banking77", texts, 10, seed=3), sample_prompts("banking77", texts, 11, seed=3)
    assert small == sample_prompts("banking77", texts, 10, seed=3)
    assert large[:10] == small  # the cache benchmark's +10% is the next prompts of the same sample
    assert small != sample_prompts("banking77", texts, 10, seed=4)
    assert all(p.startswith("Reply to this customer: message ") for p in small)
    assert len(sample_prompts("ag_news", texts, 500)) == 50


def test_held_out_prompts_leave_out_training_texts_and_duplicates(tmp_path):
    _write(tmp_path / "ag_news" / "train.jsonl", ["a", "b", "c"])
    _write(tmp_path / "ag_news" / "test.jsonl", ["b", "d", "d", " e ", ""])
    assert read_texts(tmp_path / "ag_news" / "test.jsonl") == ["b", "d", "e"]
    held = task_prompts("ag_news", "test", 10, datasets=tmp_path, exclude_split="train")
    assert sorted(held) == sorted(TEMPLATES["ag_news"].format(text=t) for t in ("d", "e"))


def test_an_unknown_task_or_an_empty_set_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown task 'trec'; expected one of ag_news, banking77"):
        sample_prompts("trec", ["x"], 1)
    with pytest.raises(ValueError, match="n=0"):
        sample_prompts("banking77", ["x"], 0)
