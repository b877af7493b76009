"""The redistill pool: a refused redistillation's teacher-labelled traffic joins the next attempt."""

import pytest

from components.common.config import ConfigError, config_from_dict
from components.prepare_redistill.core import merge_rows, pool_rows
from components.prepare_redistill.runner import read_pool, write_pool


def test_earlier_batches_come_first_and_this_batch_wins_a_duplicate():
    earlier = [("How do I top up?", "DESC"), ("card lost", "ENTY")]
    new = [("Card lost!", "LOC"), ("where is my refund", "DESC")]
    assert pool_rows(earlier, new, 10) == [("How do I top up?", "DESC"), ("Card lost!", "LOC"),
                                          ("where is my refund", "DESC")]


def test_the_pool_keeps_the_newest_rows():
    earlier = [(f"old {i}", "A") for i in range(5)]
    new = [(f"new {i}", "B") for i in range(3)]
    assert pool_rows(earlier, new, 4) == [("old 4", "A"), ("new 0", "B"), ("new 1", "B"), ("new 2", "B")]
    assert pool_rows(earlier, new, 0) == []
    with pytest.raises(ValueError, match="redistill_max_rows"):
        pool_rows(earlier, new, -1)


def test_pooled_rows_reach_the_merged_data_as_teacher_rows():
    merged = merge_rows([("what is a bank", "DESC")], pool_rows([("old traffic", "ENTY")], [("new traffic", "LOC")], 10),
                        10)
    assert [(r["text"], r["label_source"]) for r in merged.rows] == [
        ("what is a bank", "gold"), ("old traffic", "teacher"), ("new traffic", "teacher")]


def test_pool_file_round_trip_and_a_damaged_line_is_named(tmp_path):
    path = tmp_path / "pool" / "p.jsonl"
    assert read_pool(path) == []
    write_pool(path, [("a text", "A"), ("é", "B")])
    assert read_pool(path) == [("a text", "A"), ("é", "B")]
    path.write_text('{"text": "ok", "label": "A"}\nnot json\n')
    with pytest.raises(ValueError, match=r"p\.jsonl line 2"):
        read_pool(path)


def test_the_pool_setting_is_validated():
    assert config_from_dict(None, overrides=["drift.redistill_pool=false"]).drift.redistill_pool is False
    with pytest.raises(ConfigError):
        config_from_dict(None, overrides=["drift.redistill_pool=7"])


def test_the_backlog_keeps_skipped_batches_newest_last_without_repeats(tmp_path):
    from components.common.backlog import add_to_backlog, backlog_path, read_backlog

    path = backlog_path(tmp_path, "data-v1")
    assert path != backlog_path(tmp_path, "data-v2") and read_backlog(path) == []
    assert add_to_backlog(path, ["card lost", "top up failed", "refund?"], 10) == 3
    assert add_to_backlog(path, ["Card lost!", "pin blocked"], 10) == 4  # a repeat moves to the end
    assert read_backlog(path) == ["top up failed", "refund?", "Card lost!", "pin blocked"]
    assert add_to_backlog(path, ["exchange rate"], 3) == 3
    assert read_backlog(path) == ["Card lost!", "pin blocked", "exchange rate"]
    with pytest.raises(ValueError, match="reference_data_version"):
        backlog_path(tmp_path, "")
    path.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(ValueError, match=r"line 2: a redistill backlog row"):
        read_backlog(path)


def test_a_redistillation_labels_the_backlog_before_its_own_batch():
    from components.prepare_redistill.core import rows_to_label

    backlog = ["waited 1", "waited 2", "Same text", "waited 3"]
    used, todo = rows_to_label(["same text", "new 1", "new 1"], backlog, 10)
    assert used == ["waited 1", "waited 2", "waited 3"]  # the batch's own copy of "same text" is kept
    assert todo == ["waited 1", "waited 2", "waited 3", "same text", "new 1"]
    # the batch first, then the newest backlog rows that still fit
    assert rows_to_label(["same text", "new 1"], backlog, 3) == (["waited 3"], ["waited 3", "same text", "new 1"])
    assert rows_to_label(["a", "b", "c"], backlog, 2) == ([], ["a", "b"])
    assert rows_to_label(["a"], [], 5) == ([], ["a"])
