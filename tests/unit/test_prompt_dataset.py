"""task: generation's data and config: prompt files (JSONL/CSV/Parquet) validated with errors naming
the file, row, column and value, hash-split like labelled data; the `task` key and its slices."""

from __future__ import annotations

import json

import pytest

from components.common.config import Config, ConfigError, config_from_dict, config_from_json, config_hash
from components.common.dataset import (
    DatasetError,
    build_prompt_snapshot,
    read_prompt_snapshot,
    read_snapshot,
    write_prompt_snapshot,
)
from pipelines.parameters import resolve_config, step_config_json


def _build(path, **generation):
    cfg = config_from_dict({"task": "generation", "generation": generation})
    return build_prompt_snapshot(path, cfg.generation, cfg.data)


def _jsonl(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n=40):
    return [{"prompt": f"question number {i} about my order", **({"response": f"answer {i}"} if i % 2 else {})}
            for i in range(n)]


def test_a_prompt_file_is_split_by_hash_and_round_trips(tmp_path):
    snap, report = _build(_jsonl(tmp_path, _rows()))
    assert len(snap) == 40 and report["references"] == 20 and set(snap.splits) == {"train", "validation", "test"}
    again, _ = _build(_jsonl(tmp_path, list(reversed(_rows())), "r.jsonl"))  # a row's split follows its prompt
    assert dict(zip(snap.prompts, snap.splits, strict=True)) == dict(zip(again.prompts, again.splits, strict=True))
    write_prompt_snapshot(snap, tmp_path / "s.jsonl")
    assert read_prompt_snapshot(tmp_path / "s.jsonl") == snap
    first = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert list(first) == ["prompt", "split"]  # no response: no key; sorted keys
    with pytest.raises(DatasetError, match="not a snapshot row"):
        read_snapshot(tmp_path / "s.jsonl")  # a prompt snapshot is not a labelled one


def test_a_missing_prompt_column_names_the_file_and_the_columns(tmp_path):
    path = _jsonl(tmp_path, [{"question": "hello"}])
    with pytest.raises(DatasetError, match=r"p.jsonl: column 'prompt' not found; columns present: question"):
        _build(path)
    with pytest.raises(DatasetError, match=r"1 prompts are too few"):  # the column is found under its name
        _build(path, prompt_column="question")


def test_row_errors_name_the_row_column_and_value(tmp_path):
    rows = _rows(10)
    rows[6]["prompt"] = "   "
    with pytest.raises(DatasetError, match=r"p.jsonl line 7: column 'prompt' is empty"):
        _build(_jsonl(tmp_path, rows))
    rows[6]["prompt"] = 42
    with pytest.raises(DatasetError, match=r"line 7: column 'prompt' must be text, got int 42"):
        _build(_jsonl(tmp_path, rows))
    rows[6] = {"prompt": "fine", "response": ["a", "list"]}
    with pytest.raises(DatasetError, match=r"line 7: column 'response' must be text .* got list \['a', 'list'\]"):
        _build(_jsonl(tmp_path, rows))
    rows[6] = {"prompt": "nul \x00 inside"}
    with pytest.raises(DatasetError, match=r"line 7: column 'prompt' contains a NUL character at position 4"):
        _build(_jsonl(tmp_path, rows))


def test_csv_and_parquet_prompt_files_with_blank_and_null_responses(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,answer\n" + "".join(f"{r['prompt']},{r.get('response', '')}\n" for r in rows))
    from_csv, _ = _build(csv, response_column="answer")
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [r["prompt"] for r in rows], "answer": [r.get("response") for r in rows]}),
                   parquet)
    from_parquet, _ = _build(parquet, response_column="answer")
    from_jsonl, _ = _build(_jsonl(tmp_path, rows))
    assert from_csv == from_parquet == from_jsonl  # blank (CSV) and null (Parquet) mean "no reference"


def test_long_prompts_are_cut_or_refused_and_few_prompts_cannot_split(tmp_path):
    rows = _rows()
    rows[3]["prompt"] = "x" * 50
    cfg = config_from_dict({"task": "generation", "data": {"max_text_chars": 40}})
    snap, report = build_prompt_snapshot(_jsonl(tmp_path, rows), cfg.generation, cfg.data)
    assert len(snap.prompts[3]) == 40 and report["truncated_rows"] == 1
    strict = config_from_dict({"data": {"max_text_chars": 40, "long_texts": "error"}})
    with pytest.raises(DatasetError, match=r"line 4: column 'prompt' has 50 characters"):
        build_prompt_snapshot(_jsonl(tmp_path, rows), strict.generation, strict.data)
    with pytest.raises(DatasetError, match=r"2 prompts are too few to split into train and test"):
        _build(_jsonl(tmp_path, _rows(2)))


def test_the_task_key_is_validated_and_reaches_the_step_slices():
    assert Config().task == "classification"
    with pytest.raises(ConfigError, match=r"task: expected one of 'classification', 'generation', got 'summarise'"):
        resolve_config(None, ["task=summarise"])
    gen = resolve_config(None, ["task=generation", "generation.top_k=8"])
    for step in ("version_data", "cache_teacher_outputs", "train_student"):
        sliced = config_from_json(step_config_json(gen, step))
        assert sliced.task == "generation" and sliced.generation.top_k == 8
    # a classification slice and config hash are what they were before the task key existed
    assert json.loads(step_config_json(Config(), "train_student")).keys() == {"student", "distill"}
    assert config_hash(gen) != config_hash(Config())
    with pytest.raises(ConfigError, match=r"generation.losses: unknown generation loss key 'kl'"):
        resolve_config(None, ["task=generation", "generation.losses={kl: 1.0}"])
    with pytest.raises(ConfigError, match=r"generation.student_max_parameter_fraction: must be in \(0, 1\)"):
        resolve_config(None, ["generation.student_max_parameter_fraction=1.5"])
