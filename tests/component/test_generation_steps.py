"""task: generation through the first three step runners (no KFP), as the kfp components call them:
version_data -> cache_teacher_outputs -> train_student, with a tiny random Llama teacher saved as a
directory, a real content-addressed store, a real sqlite MLflow and a DVC local remote."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import read_prompt_snapshot
from components.common.generation_outputs import check_generations_aligned, read_generation_outputs
from components.common.lineage import read_lineage
from components.common.modeling import ModelError
from components.common.teacher_outputs import TeacherOutputsError
from components.common.teachers import LoadedTeacher
from components.train_student import runner as train_step
from components.version_data import runner as version_step
from tests.tiny_lm import WORDS, make_tiny_llama


def _prompts(n: int, offset: int = 0) -> list[dict]:
    """`n` distinct prompts of the tiny tokenizer's words; every third carries a reference response."""
    rows = []
    for i in range(offset, offset + n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 4)]
        row = {"prompt": " ".join(words) + f" {WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]}"}
        if i % 3 == 0:
            row["response"] = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(4))
        rows.append(row)
    assert len({r["prompt"] for r in rows}) == n
    return rows


def _write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(epochs: int = 2, **generation):
    return config_from_dict({"task": "generation",
                             "generation": {"max_new_tokens": 6, "top_k": 4, "batch_size": 4, "max_length": 48,
                                            "epochs": epochs, "train_batch_size": 8, "learning_rate": 1e-3,
                                            **generation},
                             "cache": {"fidelity_sample": 4}})


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("lm") / "teacher")


@pytest.fixture
def generate_calls(monkeypatch) -> list[int]:
    """Prompts each LoadedTeacher.generate call received (the real teacher still generates them)."""
    calls: list[int] = []
    real = LoadedTeacher.generate

    def counting(self, rendered, *args, **kwargs):
        calls.append(len(rendered))
        return real(self, rendered, *args, **kwargs)

    monkeypatch.setattr(LoadedTeacher, "generate", counting)
    return calls


def test_version_cache_train_for_a_causal_lm_teacher(home, tmp_path, lm_dir, generate_calls):
    cfg = _cfg()
    rows = _prompts(24)
    snap = tmp_path / "s1.jsonl"
    v1 = version_step.run(str(home), str(_write(rows, tmp_path / "p1.jsonl")), cfg, str(snap))
    assert v1["task"] == "generation" and v1["rows"] == 24 and v1["references"] == 8
    assert sum(v1["splits"].values()) == 24 and v1["splits"]["train"] and v1["splits"]["test"]
    snapshot = read_prompt_snapshot(snap)
    assert snapshot.prompts == [r["prompt"] for r in rows]
    assert [r is not None for r in snapshot.responses] == ["response" in r for r in rows]

    # cold: every prompt goes to the teacher once
    out1 = cache_step.run(str(home), str(snap), str(lm_dir), cfg, str(tmp_path / "g1.safetensors"))
    assert out1["task"] == "generation" and out1["teacher_forward_passes"] == 24 and sum(generate_calls) == 24
    assert out1["fidelity_passes"] == 0 and out1["tokens_generated"] > 0
    outputs = read_generation_outputs(tmp_path / "g1.safetensors")
    check_generations_aligned(outputs, snapshot.prompts, "g1")
    assert outputs.k == 4 and len(outputs) == 24 and outputs.teacher_version == out1["teacher_version"]
    assert all(1 <= len(g.tokens) <= 6 for g in outputs.generations())
    digest = hashlib.sha256((tmp_path / "g1.safetensors").read_bytes()).hexdigest()
    assert out1["sha256"] == digest

    # rerun, nothing changed: no teacher call, a fidelity sample of the cached rows, the same bytes
    generate_calls.clear()
    again = cache_step.run(str(home), str(snap), str(lm_dir), cfg, str(tmp_path / "g1b.safetensors"))
    assert again["teacher_forward_passes"] == 0 and generate_calls == [] and again["cache_hits"] == 24
    assert again["fidelity_passes"] == 4
    assert hashlib.sha256((tmp_path / "g1b.safetensors").read_bytes()).hexdigest() == digest

    # 4 appended prompts: only they reach the teacher; the first 24 rows are unchanged
    snap2 = tmp_path / "s2.jsonl"
    v2 = version_step.run(str(home), str(_write(rows + _prompts(4, offset=24), tmp_path / "p2.jsonl")), cfg,
                          str(snap2))
    assert v2["data_version"] != v1["data_version"] and v2["rows"] == 28
    out2 = cache_step.run(str(home), str(snap2), str(lm_dir), cfg, str(tmp_path / "g2.safetensors"))
    assert out2["teacher_forward_passes"] == 4 and sum(generate_calls) == 4
    grown = read_generation_outputs(tmp_path / "g2.safetensors")
    for a, b in zip(outputs.generations(), grown.generations(range(24)), strict=True):
        assert (a.tokens == b.tokens).all() and (a.topk_logprobs == b.topk_logprobs).all()

    # new decoding parameters regenerate every prompt
    generate_calls.clear()
    longer = cache_step.run(str(home), str(snap), str(lm_dir), _cfg(max_new_tokens=7), str(tmp_path / "g3.safetensors"))
    assert longer["teacher_forward_passes"] == 24 and sum(generate_calls) == 24

    # train_student: a layer subset within the budget, saved as a plain causal-LM folder
    model_out = tmp_path / "student"
    summary = train_step.run(str(home), str(snap), str(tmp_path / "g1.safetensors"), str(lm_dir), cfg,
                             v1["data_version"], str(model_out), "cfghash", out1["teacher_version"])
    assert summary["task"] == "generation" and summary["train_rows"] == v1["splits"]["train"]
    assert summary["student"] == {"init": "teacher_layers", "layers": [0]}
    assert set(summary["losses"]) == {"seq_kd", "token_kl", "ref_ce"} and summary["reference_rows"] > 0
    assert summary["parameters"] < summary["teacher_parameters"] and summary["parameter_fraction"] <= 0.45
    assert len(summary["history"]) == 2 and all(h["train_loss"] > 0 for h in summary["history"])
    lineage = read_lineage(model_out)
    assert lineage["data_version"] == v1["data_version"] and lineage["teacher_version"] == out1["teacher_version"]
    assert lineage["config"]["task"] == "generation"
    import mlflow

    run = mlflow.get_run(lineage["mlflow_run_id"])
    assert run.data.tags["distillops.task"] == "generation" and run.data.metrics["student_parameters"] > 0

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student = AutoModelForCausalLM.from_pretrained(model_out)
    tokenizer = AutoTokenizer.from_pretrained(model_out)
    teacher = AutoModelForCausalLM.from_pretrained(lm_dir)
    assert student.config.num_hidden_layers == 1
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    enc = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "hello my card was declined"}],
                                                  tokenize=False, add_generation_prompt=True),
                    return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        generated = student.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] > enc["input_ids"].shape[1]

    # the artifact of other prompts is refused before any training
    with pytest.raises(TeacherOutputsError, match=r"28 generations .* for 24 prompts"):
        train_step.run(str(home), str(snap), str(tmp_path / "g2.safetensors"), str(lm_dir), cfg,
                       v1["data_version"], str(tmp_path / "nope"), "cfghash")
    assert not (tmp_path / "nope").exists()


def test_a_student_with_another_tokenizer_is_refused_before_training(home, tmp_path, lm_dir, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    cfg = _cfg()
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), cfg, str(snap))
    out = cache_step.run(str(home), str(snap), str(lm_dir), cfg, str(tmp_path / "g.safetensors"))
    # a causal LM of the teacher's shape whose tokenizer numbers the same words differently
    other = make_tiny_llama(tmp_path / "other", seed=1)
    words = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", *reversed(dict.fromkeys(WORDS))]
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)},
                                                                               unk_token="<unk>")),
                                   pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast._tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast.save_pretrained(other)

    def no_training(*args, **kwargs):
        raise AssertionError("training must not start with a mismatched tokenizer")

    monkeypatch.setattr(train_step, "train_lm_student", no_training)
    with pytest.raises(ModelError, match=r"generation.student_model .*other: its tokenizer differs from the teacher's"):
        train_step.run(str(home), str(snap), str(tmp_path / "g.safetensors"), str(lm_dir),
                       _cfg(student_model=str(other)), v["data_version"], str(tmp_path / "student"), "cfghash",
                       out["teacher_version"])
    assert not (tmp_path / "student").exists()


def test_a_classifier_is_refused_as_the_generation_teacher(home, tmp_path, tiny_teacher):
    cfg = _cfg()
    snap = tmp_path / "s.jsonl"
    version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), cfg, str(snap))
    with pytest.raises(ModelError, match="task generation needs a causal-LM teacher"):
        cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "g.safetensors"))
    assert not (tmp_path / "g.safetensors").exists()


def test_the_fanned_out_cache_step_makes_the_unsharded_artifact(home, tmp_path, lm_dir, generate_calls):
    """plan -> 2 workers -> merge through the step-level functions the DAG's components call (they
    dispatch on cfg.task): every prompt generated once, in the workers, and the very bytes of one worker."""
    from components.cache_teacher_outputs import fanout

    sharded = config_from_dict({"task": "generation", "generation": {"max_new_tokens": 6, "top_k": 4, "batch_size": 4},
                                "cache": {"shards": 2, "fidelity_sample": 4}})
    snap = tmp_path / "s.jsonl"
    version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), sharded, str(snap))
    shards = fanout.plan_shards(str(home), str(snap), str(lm_dir), sharded)
    assert [json.loads(s)["rows"] for s in shards] == [12, 12]
    reports = [fanout.work_shard(str(home), s, str(lm_dir), sharded) for s in shards]
    assert sum(generate_calls) == 24 and [r["teacher_forward_passes"] for r in reports] == [12, 12]
    generate_calls.clear()
    merged = cache_step.run(str(home), str(snap), str(lm_dir), sharded, str(tmp_path / "fan.safetensors"),
                            worker_reports=reports)
    assert generate_calls == [] and merged["teacher_forward_passes"] == 24 and merged["fidelity_passes"] == 0
    assert merged["worker_teacher_forward_passes"] == 24
    # the same prompts in a cold home, unsharded
    single = cache_step.run(str(tmp_path / "home2"), str(snap), str(lm_dir), _cfg(), str(tmp_path / "one.safetensors"))
    assert single["sha256"] == merged["sha256"]
    # planned again with every generation stored: one empty shard, whose worker loads no teacher
    (empty,) = fanout.plan_shards(str(home), str(snap), str(lm_dir), sharded)
    assert fanout.work_shard(str(home), empty, "no-such-teacher", sharded)["teacher_forward_passes"] == 0


def test_a_preempted_generative_student_resumes_from_its_checkpoint(home, tmp_path, lm_dir, monkeypatch):
    """SIGTERM mid-training checkpoints and raises Preempted (the component exits 75); the retry, with the
    same config, data and teacher, resumes from that step and writes the student."""
    import os
    import signal

    from components.distillation.preemption import Preempted

    monkeypatch.setenv("DISTILLOPS_PROGRESS", "0")
    cfg = config_from_dict({"task": "generation", "generation": {"max_new_tokens": 6, "top_k": 4, "batch_size": 4,
                                                                 "epochs": 2, "train_batch_size": 4},
                            "distill": {"checkpoint_every": 2, "log_every": 1}})
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), cfg, str(snap))
    out = cache_step.run(str(home), str(snap), str(lm_dir), cfg, str(tmp_path / "g.safetensors"))
    real = train_step.train_lm_student

    def sigterm_at_step_3(*args, on_metrics=None, **kwargs):
        def hook(metrics, at):
            on_metrics(metrics, at)
            if at == 3 and "step_loss" in metrics:
                os.kill(os.getpid(), signal.SIGTERM)

        return real(*args, on_metrics=hook, **kwargs)

    def train(name):
        return train_step.run(str(home), str(snap), str(tmp_path / "g.safetensors"), str(lm_dir), cfg,
                              v["data_version"], str(tmp_path / name), "h", out["teacher_version"])

    monkeypatch.setattr(train_step, "train_lm_student", sigterm_at_step_3)
    with pytest.raises(Preempted, match="training stopped at step 3"):
        train("preempted")
    assert not (tmp_path / "preempted").exists()
    monkeypatch.setattr(train_step, "train_lm_student", real)
    retried = train("retried")
    assert retried["resumed_from_step"] == 3 and (tmp_path / "retried" / "model.safetensors").is_file()


def test_a_registered_teacher_is_pinned_through_the_steps(home, tmp_path, lm_dir):
    """generation.teacher_ref as `distillops teacher --task generation` registers it: the alias resolves
    to a registry version that the cache step records and train_student checks."""
    from components.common.home import Home
    from components.common.teachers import TeacherMismatchError
    from components.teacher.runner import prepare_lm_teacher

    cfg = _cfg()
    ref = prepare_lm_teacher(Home.resolve(home), cfg, base=str(lm_dir))["ref"]
    assert ref == cfg.generation.teacher_ref
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), cfg, str(snap))
    out = cache_step.run(str(home), str(snap), ref, cfg, str(tmp_path / "g.safetensors"))
    assert out["teacher_version"].startswith("distillops-lm-teacher/v1+sha256:")
    with pytest.raises(TeacherMismatchError, match="this run pinned"):
        train_step.run(str(home), str(snap), str(tmp_path / "g.safetensors"), ref, cfg, v["data_version"],
                       str(tmp_path / "student"), "h", "distillops-lm-teacher/v0+sha256:0000")
    done = train_step.run(str(home), str(snap), str(tmp_path / "g.safetensors"), ref, cfg, v["data_version"],
                          str(tmp_path / "student"), "h", out["teacher_version"])
    assert done["teacher_version"] == out["teacher_version"] and done["teacher_ref"] == ref


def test_a_narrow_student_and_a_lora_student_train_and_save_plain_folders(home, tmp_path, lm_dir):
    """generation.student_init: narrow and generation.lora_r through the real train_student runner: each
    saved folder is a plain causal LM with the teacher's vocabulary (LoRA merged), its shape in the lineage."""
    pytest.importorskip("peft")
    import transformers
    from safetensors import safe_open

    cfg = _cfg()
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(_write(_prompts(24), tmp_path / "p.jsonl")), cfg, str(snap))
    out = cache_step.run(str(home), str(snap), str(lm_dir), cfg, str(tmp_path / "g.safetensors"))
    teacher_tokenizer = transformers.AutoTokenizer.from_pretrained(lm_dir)

    def train(name, **generation):
        summary = train_step.run(str(home), str(snap), str(tmp_path / "g.safetensors"), str(lm_dir),
                                 _cfg(epochs=1, **generation),
                                 v["data_version"], str(tmp_path / name), f"h-{name}", out["teacher_version"])
        folder = tmp_path / name
        with safe_open(folder / "model.safetensors", "pt") as f:
            assert not any("lora_" in k or k.startswith("base_model.") for k in f.keys())
        model = transformers.AutoModelForCausalLM.from_pretrained(folder)
        assert transformers.AutoTokenizer.from_pretrained(folder).get_vocab() == teacher_tokenizer.get_vocab()
        assert model.config.vocab_size == len(teacher_tokenizer) and len(summary["history"]) == 1
        generator = transformers.pipeline("text-generation", model=str(folder))
        assert generator("hello my card", max_new_tokens=3, do_sample=False)[0]["generated_text"]
        return summary, model

    narrow, model = train("narrow", student_init="narrow")
    assert narrow["student"] == {"init": "narrow", "hidden_size": 16, "intermediate_size": 32, "num_layers": 2,
                                 "num_heads": 4, "num_kv_heads": 2, "seed": 0}
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 2
    assert narrow["parameters"] == sum(p.numel() for p in model.parameters()) < narrow["teacher_parameters"]

    lora, model = train("lora", student_layers=[0, 3], lora_r=2)
    assert lora["student"]["layers"] == [0, 3] and lora["student"]["lora"]["r"] == 2
    assert 0 < lora["student"]["lora"]["trainable_parameters"] < lora["parameters"]
    assert lora["parameters"] == sum(p.numel() for p in model.parameters())  # counted merged, adapters folded in
    assert read_lineage(tmp_path / "lora")["student"]["lora"]["merged"] is True
