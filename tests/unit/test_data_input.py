"""Bad and hostile input at the data boundary (issue 13, defects 4, 7, 8; RELIABILITY.md 30-33, 35).

Every file is built here, a few rows at a time; the CLI checks call `pipelines.cli.main` and read
stderr, as a user would see it.
"""

import json

import pytest
from fakes import make_rows, write_jsonl

from components.common import dataset as ds
from components.common.config import ConfigError, config_from_dict
from components.common.dataset import DatasetError, build_snapshot, read_texts, write_snapshot
from components.common.hashing import md5_file
from pipelines.cli import main

TEN_MB = 10 * 1024 * 1024


def _jsonl_lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _good_rows(n: int = 40) -> list[str]:
    return [json.dumps(r) for r in make_rows(n)]


# --- Defect 4 and item 32: an explicit decode policy ----------------------------------------------


@pytest.mark.parametrize("bad, what", [
    (r'{"text": "caf\ud800 ok", "label": "x"}', r"lone surrogate"),
    (r'{"text": "a\u0000b", "label": "x"}', r"NUL"),
    (r'{"text": "fine", "label": "x\udfff"}', r"column 'label'.*lone surrogate"),
])
def test_lone_surrogate_and_nul_name_file_and_line(tmp_path, bad, what):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_lines(*_good_rows(3), bad, *_good_rows(40)))
    with pytest.raises(DatasetError, match=rf"d\.jsonl line 4: .*{what}"):
        build_snapshot(path)


def test_nul_byte_in_csv_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine text,x\nbad\x00text,y\n")
    with pytest.raises(DatasetError, match=r"d\.csv line 3: column 'text'.*NUL"):
        build_snapshot(path)


@pytest.mark.parametrize("bad", [r'{"text": "caf\ud800", "label": "x"}', r'{"text": "a\u0000b", "label": "y"}'])
def test_version_data_cli_refuses_bad_text_with_exit_2_and_no_traceback(home, tmp_path, capsys, bad):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_lines(*_good_rows(5), bad, *_good_rows(40)))
    code = main(["version-data", "--home", str(home), "--data", str(path), "--out", str(tmp_path / "s.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path} line 6:" in err
    assert "Traceback" not in err


def test_production_batch_with_a_lone_surrogate_names_the_line(tmp_path):
    path = tmp_path / "prod.jsonl"
    path.write_bytes(_jsonl_lines('{"text": "hello"}', r'{"text": "x\ud83d"}'))
    with pytest.raises(DatasetError, match=r"prod\.jsonl line 2: column 'text'.*lone surrogate"):
        read_texts(path)


def test_non_utf8_csv_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nok,x\ncaf\xe9,y\n")
    with pytest.raises(DatasetError, match=r"d\.csv line 3: text is not valid UTF-8"):
        build_snapshot(path)


def test_bom_is_stripped_for_jsonl_and_csv(tmp_path):
    rows = make_rows(60)
    plain = build_snapshot(write_jsonl(rows, tmp_path / "plain.jsonl"))
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.jsonl").read_bytes())
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbftext,label\n" + "".join(f'"{r["text"]}",{r["label"]}\n' for r in rows).encode())
    assert build_snapshot(jsonl) == plain
    assert build_snapshot(csv) == plain


def test_crlf_and_lf_give_the_same_snapshot_and_data_hash(tmp_path):
    rows = make_rows(60)
    for name, eol in (("lf", "\n"), ("crlf", "\r\n")):
        # A Windows editor writes CRLF inside a quoted multi-line CSV field too.
        lines = [f'"{r["text"]}",{r["label"]}' for r in rows] + [f'"two{eol}lines",money']
        (tmp_path / f"{name}.csv").write_bytes(("text,label" + eol + eol.join(lines) + eol).encode())
        (tmp_path / f"{name}.jsonl").write_bytes(eol.join(json.dumps(r) for r in rows).encode() + eol.encode())
    for ext in ("csv", "jsonl"):
        lf, crlf = build_snapshot(tmp_path / f"lf.{ext}"), build_snapshot(tmp_path / f"crlf.{ext}")
        assert lf == crlf
        assert not any("\r" in t for t in crlf.texts)
        write_snapshot(lf, tmp_path / f"lf-{ext}.snap")
        write_snapshot(crlf, tmp_path / f"crlf-{ext}.snap")
        assert md5_file(tmp_path / f"lf-{ext}.snap") == md5_file(tmp_path / f"crlf-{ext}.snap")


# --- Item 30: malformed rows are a clear error before any training ---------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("d.jsonl", '{"text": "fine", "label": "x"}\n{"label": "y"}\n', r"line 2: column 'text' is missing or null"),
    ("d.jsonl", '{"text": "fine", "label": "x"}\n{"text": ["a"], "label": "y"}\n',
     r"line 2: column 'text' must be text, got list"),
    ("d.jsonl", '{"text": "fine", "label": "x"}\n["fine", "x"]\n', r"line 2: expected a JSON object, got list"),
    ("d.jsonl", '{"text": "fine", "label": "x"}\n{"text": "cut off", "lab\n', r"line 2: not valid JSON"),
    ("d.csv", "text,label\nfine,x\nonly text\n", r"line 3: column 'label' is missing or null"),
])
def test_malformed_rows_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        build_snapshot(path)


def test_extra_columns_are_ignored_and_never_reach_the_snapshot(tmp_path):
    rows = [{**r, "id": i, "meta": {"src": "web"}} for i, r in enumerate(make_rows(60))]
    snap = build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))
    assert len(snap) == 60
    write_snapshot(snap, tmp_path / "s.jsonl")
    first = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert set(first) == {"text", "label", "split"}


# --- Item 31: empty input is an explicit error -----------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\ufeff\n"])
def test_empty_dataset_is_an_explicit_error(tmp_path, content):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=r"d\.jsonl: no rows"):
        build_snapshot(path)


def test_empty_production_batch_is_an_explicit_error(tmp_path):
    path = tmp_path / "prod.csv"
    path.write_text("text\n")
    with pytest.raises(DatasetError, match=r"prod\.csv: no rows"):
        read_texts(path)


# --- Defect 7 and item 33: a cap on raw text length, applied before tokenization -------------------


def test_a_10mb_row_is_cut_to_max_text_chars_and_counted(tmp_path):
    rows = make_rows(60) + [{"text": "word " * (TEN_MB // 5), "label": "money"}]
    snap, report = ds.build_snapshot_with_report(write_jsonl(rows, tmp_path / "d.jsonl"), max_text_chars=20_000)
    assert max(len(t) for t in snap.texts) == 20_000
    assert report["truncated_rows"] == 1 and report["max_text_chars"] == 20_000
    assert report["longest_text_chars"] == TEN_MB


def test_default_cap_applies_without_configuration(tmp_path):
    rows = make_rows(60) + [{"text": "x" * 50_000, "label": "money"}]
    snap = build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))
    assert max(len(t) for t in snap.texts) == config_from_dict({}).data.max_text_chars == 20_000


def test_long_text_policy_error_names_the_row(tmp_path):
    rows = make_rows(60)
    rows[2] = {"text": "y" * 30_000, "label": "money"}
    with pytest.raises(DatasetError, match=r"d\.jsonl line 3: column 'text' has 30000 characters, more than "
                                           r"data\.max_text_chars=20000"):
        build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"), long_texts="error")


def test_production_texts_are_capped_before_the_model_sees_them(tmp_path):
    path = write_jsonl([{"text": "short"}, {"text": "z" * TEN_MB}], tmp_path / "prod.jsonl")
    assert [len(t) for t in read_texts(path, max_text_chars=1000)] == [5, 1000]


def test_teacher_step_never_tokenizes_more_than_the_cap(home, tmp_path, monkeypatch):
    """`distillops teacher` reads the data itself: what it hands to fine-tuning is already capped."""
    from components.common.home import Home
    from components.teacher import runner

    seen = {}

    class Stop(Exception):
        pass

    def fake_finetune(base, snapshot, label_names, cfg, on_metrics=None):
        seen["longest"] = max(len(t) for t in snapshot.texts)
        raise Stop

    monkeypatch.setattr(runner, "finetune", fake_finetune)
    monkeypatch.setattr(runner.registry, "connect", lambda home: None)
    monkeypatch.setattr(runner, "start_run", _null_run)
    rows = make_rows(60) + [{"text": "word " * (TEN_MB // 5), "label": "money"}]
    cfg = config_from_dict({"data": {"max_text_chars": 5000}})
    with pytest.raises(Stop):
        runner.prepare_teacher(Home.resolve(str(home)).ensure(), str(write_jsonl(rows, tmp_path / "d.jsonl")), cfg,
                               base="unused")
    assert seen["longest"] == 5000


class _null_run:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def metric_logger(self):
        return None


@pytest.mark.parametrize("override, message", [
    ({"max_text_chars": 0}, r"data\.max_text_chars: must be >= 1, got 0"),
    ({"long_texts": "cut"}, r"data\.long_texts: expected 'truncate' or 'error', got 'cut'"),
    ({"conflicting_labels": "vote"}, r"data\.conflicting_labels: expected 'error', 'drop' or 'majority', got 'vote'"),
])
def test_input_policies_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": override})


# --- Defect 8 and item 35: split by normalised text, overlap reported, conflicts refused -----------


def _variants(base: str) -> list[str]:
    return [base, base.upper(), f"  {base.title()}  ", base.replace(" ", "   ") + "!!", base + ".", base + " ?",
            base.replace("a", "\uff41")]  # fullwidth a: NFKC folds it back


def test_near_duplicates_land_in_the_same_split(tmp_path):
    bases = [f"{r['text']} and more" for r in make_rows(80)]
    rows = [{"text": v, "label": r["label"]} for b, r in zip(bases, make_rows(80), strict=True) for v in _variants(b)]
    base_of = {v: i for i, b in enumerate(bases) for v in _variants(b)}
    snap = build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"))
    splits_of_base: dict[int, set[str]] = {}
    for text, split in zip(snap.texts, snap.splits, strict=True):
        splits_of_base.setdefault(base_of[text], set()).add(split)
    spread = {i: s for i, s in splits_of_base.items() if len(s) > 1}
    assert not spread, f"{len(spread)} of 80 texts have near-duplicates in more than one split"


def test_version_data_reports_truncation_overlap_and_conflicts(home, tmp_path):
    from components.version_data import runner as version_step

    rows = make_rows(60) + [{"text": r["text"].upper() + "!", "label": r["label"]} for r in make_rows(10)]
    rows += [{"text": "x " * 20_000, "label": "money"}, {"text": "Great movie", "label": "sports"},
             {"text": "great movie.", "label": "money"}]
    cfg = config_from_dict({"data": {"conflicting_labels": "drop", "max_conflicting_fraction": 0.05}})
    summary = version_step.run(str(home), str(write_jsonl(rows, tmp_path / "d.jsonl")), cfg, str(tmp_path / "s.jsonl"))
    report = summary["input"]
    assert report["truncated_rows"] == 1 and report["max_text_chars"] == 20_000 and report["long_texts"] == "truncate"
    assert report["conflicting_labels"] == {"policy": "drop", "texts": 1, "rows_dropped": 2}
    assert report["overlap"] == {"exact_across_splits": 0, "normalised_across_splits": 0,
                                 "exact_duplicates_within_splits": 0, "normalised_duplicates_within_splits": 10}
    assert summary["rows"] == 71 == sum(summary["splits"].values())
    assert summary["step_report"]["truncated_rows"] == 1


def test_normalize_text():
    assert ds.normalize_text("  Hello,   WORLD!! ") == ds.normalize_text("hello, world") == "hello, world"
    assert ds.normalize_text("\uff28ello world?") == "hello world"
    assert ds.normalize_text("?!") == "?!"  # only punctuation: kept, never an empty key


def test_overlap_report_counts_cross_split_duplicates():
    texts = ["a b", "A B.", "c d", "c d", "e f", "e f"]
    splits = ["train", "test", "train", "validation", "test", "test"]
    assert ds.overlap_report(texts, splits) == {
        "exact_across_splits": 1,  # "c d" in train and validation
        "normalised_across_splits": 2,  # also "a b" / "A B." in train and test
        "exact_duplicates_within_splits": 1,  # "e f" twice in test
        "normalised_duplicates_within_splits": 1,
    }


def _conflicting_rows() -> list[dict]:
    rows = make_rows(60)
    rows[1] = {"text": "Great movie", "label": "sports"}
    rows[4] = {"text": "great   movie!", "label": "money"}
    rows[7] = {"text": "GREAT MOVIE", "label": "sports"}
    return rows


def test_conflicting_labels_are_an_error_naming_the_rows(tmp_path):
    with pytest.raises(DatasetError, match=r"d\.jsonl: 1 text\(s\) carry conflicting labels .*"
                                           r"line 2 'sports', line 5 'money', line 8 'sports'"):
        build_snapshot(write_jsonl(_conflicting_rows(), tmp_path / "d.jsonl"))


def test_conflicting_labels_drop_and_majority_are_reported(tmp_path):
    path = write_jsonl(_conflicting_rows(), tmp_path / "d.jsonl")
    dropped, report = ds.build_snapshot_with_report(path, conflicting_labels="drop")
    assert len(dropped) == 57 and "Great movie" not in dropped.texts
    assert report["conflicting_labels"] == {"policy": "drop", "texts": 1, "rows_dropped": 3}
    majority, report = ds.build_snapshot_with_report(path, conflicting_labels="majority")
    assert len(majority) == 59 and "great   movie!" not in majority.texts and "Great movie" in majority.texts
    assert report["conflicting_labels"] == {"policy": "majority", "texts": 1, "rows_dropped": 1}


def test_every_row_dropped_by_the_conflict_policy_is_an_explicit_error(tmp_path):
    rows = [{"text": "same", "label": "a"}, {"text": "Same.", "label": "b"}]
    with pytest.raises(DatasetError, match=r"no rows left"):
        build_snapshot(write_jsonl(rows, tmp_path / "d.jsonl"), conflicting_labels="drop")


def test_redistill_merge_treats_near_duplicates_as_already_present():
    """A production text equal to a human-labelled one after normalisation keeps the human label;
    otherwise the teacher's label would make the next version_data refuse a conflicting label."""
    from components.prepare_redistill.core import merge_rows

    merged = merge_rows([("Hello there", "x"), ("b", "y")], [("hello   THERE!", "z"), ("New one", "x"),
                                                              ("new one.", "y")], max_added=5)
    assert merged.rows == [{"text": "Hello there", "label": "x", "label_source": "gold"},
                           {"text": "b", "label": "y", "label_source": "gold"},
                           {"text": "New one", "label": "x", "label_source": "teacher"}]
    assert (merged.kept, merged.added, merged.already_present) == (2, 1, 2)


@pytest.mark.parametrize("step", ["monitor_drift", "prepare_redistill"])
def test_drift_steps_cap_production_texts_from_the_config(home, tmp_path, monkeypatch, step):
    """The production batch of the drift DAG is capped by data.max_text_chars where it is read,
    before any model or tokenizer sees it."""
    import importlib

    runner = importlib.import_module(f"components.{step}.runner")
    seen = {}

    class Stop(Exception):
        pass

    def capture(texts, batch_name):
        seen["lengths"] = [len(t) for t in texts]
        raise Stop

    monkeypatch.setattr(runner, "validate_texts", capture)
    monkeypatch.setattr(runner, "prepare_process", lambda: None)
    production = write_jsonl([{"text": "short"}, {"text": "z" * TEN_MB}], tmp_path / "prod.jsonl")
    cfg = config_from_dict({"data": {"max_text_chars": 3000}})
    with pytest.raises(Stop):
        if step == "monitor_drift":
            runner.run(str(home), str(production), "text", "models:/s@champion", cfg, str(tmp_path / "r.html"),
                       str(tmp_path / "v.json"))
        else:
            verdict = tmp_path / "verdict.json"
            verdict.write_text(json.dumps({"drifted": True, "reference_data_version": "x"}))
            runner.run(str(home), str(verdict), str(production), "text", "t", cfg)
    assert seen["lengths"] == [5, 3000]


@pytest.mark.parametrize("command", ["run", "monitor"])
def test_dag_commands_refuse_bad_text_before_the_dag_starts(home, tmp_path, capsys, command):
    """`distillops run` / `monitor` check the input file first: the same message, exit 2, no
    traceback, instead of a failed kfp.local task (exit 1) with the step's traceback in its log."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_lines(*_good_rows(5), r'{"text": "caf\ud800", "label": "x"}', *_good_rows(40)))
    args = ["--data", str(path), "--teacher", str(tmp_path)] if command == "run" else ["--production", str(path)]
    code = main([command, "--home", str(home), *args])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert f"{path} line 6: column 'text' contains a lone surrogate" in err
    assert "Traceback" not in err


def test_the_default_drops_a_few_conflicting_rows_and_counts_them(tmp_path):
    """Real datasets carry a little label noise (trec: one text with two labels); the defaults
    drop those rows and say so instead of stopping the run."""
    cfg = config_from_dict({})
    assert (cfg.data.conflicting_labels, cfg.data.max_conflicting_fraction) == ("drop", 0.01)
    rows = make_rows(400)
    rows[1] = {"text": "Great movie", "label": "sports"}
    rows[4] = {"text": "great   movie!", "label": "money"}
    snap, report = ds.snapshot_from_config(write_jsonl(rows, tmp_path / "d.jsonl"), cfg.data)
    assert report["conflicting_labels"] == {"policy": "drop", "texts": 1, "rows_dropped": 2}
    assert len(snap) == 398


@pytest.mark.parametrize("policy", ["drop", "majority"])
def test_many_conflicting_rows_are_an_error_under_any_policy(tmp_path, policy):
    """3 of 60 rows (5%) conflict: above the 1% default that is a broken label column, not noise."""
    path = write_jsonl(_conflicting_rows(), tmp_path / "d.jsonl")
    with pytest.raises(DatasetError, match=r"d\.jsonl: 3 of 60 rows \(5\.0%\) carry conflicting labels, more than "
                                           r"data\.max_conflicting_fraction=0\.01.*line 2 'sports', line 5 'money'"):
        ds.build_snapshot_with_report(path, conflicting_labels=policy, max_conflicting_fraction=0.01)
    kept, _ = ds.build_snapshot_with_report(path, conflicting_labels=policy, max_conflicting_fraction=0.05)
    assert len(kept) < 60


def test_max_conflicting_fraction_must_be_a_fraction():
    with pytest.raises(ConfigError, match=r"data\.max_conflicting_fraction: expected a fraction within \[0, 1\], "
                                          r"got 1\.5"):
        config_from_dict({"data": {"max_conflicting_fraction": 1.5}})
