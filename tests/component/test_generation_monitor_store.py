"""monitor_drift's generative disagreement (LMView.disagreement) takes the teacher's answers from the
content-addressed teacher store, under the cache step's keys and decoding: the champion's training
prompts cost no teacher call, the production prompts the store lacks are generated once and stored,
a second measurement costs none, and the redistillation's cache step finds them answered. A tiny
random Llama teacher and student, a real store, DVC local remote (no MLflow: the monitored model's
registry entry is a stand-in carrying its lineage tags)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.home import Home
from components.common.modeling import ModelError
from components.common.teacher_store import open_store
from components.common.teachers import LoadedTeacher
from components.monitor_drift.views import LMView
from components.version_data import runner as version_step
from tests.tiny_lm import WORDS, make_tiny_llama

SAMPLE = 8


def _prompts(n: int, offset: int = 0) -> list[str]:
    out = []
    for i in range(offset, offset + n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 4)]
        out.append(" ".join(words) + f" {WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]}")
    assert len(set(out)) == n
    return out


def _version(home, prompts: list[str], tmp_path: Path, name: str, cfg) -> Path:
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    snap = tmp_path / f"{name}-snapshot.jsonl"
    version_step.run(str(home), str(data), cfg, str(snap))
    return snap


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    return {"teacher": make_tiny_llama(root / "teacher"), "student": make_tiny_llama(root / "student", seed=1, layers=2)}


@pytest.fixture
def generate_calls(monkeypatch) -> list[int]:
    """Prompts each LoadedTeacher.generate call received (the teacher's generations; the monitored
    student answers through model.generate, not through this)."""
    calls: list[int] = []
    real = LoadedTeacher.generate

    def counting(self, rendered, *args, **kwargs):
        calls.append(len(rendered))
        return real(self, rendered, *args, **kwargs)

    monkeypatch.setattr(LoadedTeacher, "generate", counting)
    return calls


def _cfg():
    return config_from_dict({"task": "generation",
                             "generation": {"max_new_tokens": 6, "top_k": 4, "batch_size": 4, "max_length": 48},
                             "cache": {"fidelity_sample": 0},
                             "drift": {"lm_disagreement_sample": SAMPLE}})


def test_monitor_reads_the_teachers_answers_from_the_store_and_stores_the_missing_ones(home, tmp_path, lm_dirs,
                                                                                      generate_calls):
    cfg = _cfg()
    h = Home.resolve(home).ensure()
    training, production = _prompts(20), _prompts(6, offset=40)
    snap = _version(home, training, tmp_path, "champion", cfg)
    cached = cache_step.run(str(home), str(snap), str(lm_dirs["teacher"]), cfg, str(tmp_path / "g1.safetensors"))
    assert cached["teacher_forward_passes"] == 20
    champion = SimpleNamespace(name="tiny-lm-student", version="1",
                               tags={"teacher_ref": str(lm_dirs["teacher"]),
                                     "teacher_version": cached["teacher_version"]})
    reference = LMView.training_texts(snap)  # the champion's training prompts, as monitor_drift reads them
    assert len(reference) > SAMPLE

    # the reference sample's answers are the cache step's rows: only the production prompts reach the teacher
    generate_calls.clear()
    view = LMView(lm_dirs["student"], cfg)
    first = view.disagreement(h, champion, reference, production)
    assert generate_calls == [6]  # one call, batched inside (generation.batch_size)
    assert (first["teacher_calls"], first["teacher_answers_cached"]) == (6, SAMPLE)
    assert first["n_production"] == 6 and "ROUGE-L" in first["measure"] and "greedy" in first["measure"]
    refs = open_store(h, cfg.cache.url).refs()
    assert len(refs["monitor_drift--tiny-lm-student"]) == SAMPLE + 6  # cache gc keeps what the monitor stored

    # measured again: every answer from the store, the same rates
    generate_calls.clear()
    second = view.disagreement(h, champion, reference, production)
    assert generate_calls == [] and (second["teacher_calls"], second["teacher_answers_cached"]) == (0, SAMPLE + 6)
    assert (second["reference"], second["production"]) == (first["reference"], first["production"])

    # the stored answers are the teacher's greedy answers: the teacher monitored as its own student agrees
    # with them everywhere (and its answers, as the student's, never go through LoadedTeacher.generate)
    itself = LMView(lm_dirs["teacher"], cfg).disagreement(h, champion, reference, production)
    assert generate_calls == [] and (itself["reference"], itself["production"]) == (0.0, 0.0)

    # the redistillation's cache step finds the production prompts answered: no teacher call at all
    redistill = _version(home, training + production, tmp_path, "redistill", cfg)
    out = cache_step.run(str(home), str(redistill), str(lm_dirs["teacher"]), cfg, str(tmp_path / "g2.safetensors"))
    assert out["teacher_forward_passes"] == 0 and out["cache_hits"] == 26 and generate_calls == []


def test_the_monitor_refuses_a_teacher_or_a_model_that_is_not_a_causal_lm(home, tmp_path, lm_dirs, tiny_teacher):
    cfg = _cfg()
    with pytest.raises(ModelError, match=r"the monitored model is a sequence_classifier, not a causal LM; task "
                                         r"generation monitors generative students"):
        LMView(tiny_teacher, cfg)
    classifier_teacher = SimpleNamespace(name="mixed", version="3", tags={"teacher_ref": str(tiny_teacher)})
    with pytest.raises(ModelError, match=r"the teacher of mixed v3 \(local\+sha256:\w+\) is a sequence_classifier, "
                                         r"not a causal LM"):
        LMView(lm_dirs["student"], cfg).disagreement(Home.resolve(home).ensure(), classifier_teacher, ["a"], ["b"])
