"""The generative gate end to end on tiny random Llamas (benchmark_gate/lm_runner.evaluate_generation):
a 4-layer teacher whose generations are cached as the cache step makes them, a layer-subset student
and a champion saved with save_pretrained; the report's fields, the HTML page escaping a prompt
with a <script> tag, and a refused student with the failing check's numbers in the reason."""

from __future__ import annotations

import json

import pytest

from components.benchmark_gate.lm_runner import evaluate_generation
from components.common.config import config_from_dict
from components.common.generation import Decoding
from components.common.modeling import ModelError
from components.common.teachers import load_teacher
from components.distillation.lm_students import layer_subset_student
from tests.tiny_lm import make_tiny_llama

PROMPTS = ["hello my card was declined <script>alert(1)</script>", "where is my order please",
           "reset password please", "refund order late thanks"]
REFERENCES = ["please reset the card", None, "reset password yes", None]
MAX_NEW = 8
# Nothing gated but the champion's regression (tiny random models: speed-ups and fidelity are noise).
LOOSE = {"lm_min_rouge_l": 0.0, "lm_min_token_agreement": 0.0, "lm_max_nll_excess": 0.0, "lm_min_speedup": 0.0,
         "lm_max_parameter_fraction": 0.0, "lm_max_champion_regression": 1.0, "lm_speed_new_tokens": 4,
         "lm_speed_repeats": 1, "lm_report_samples": 3}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-gate")
    teacher_dir = make_tiny_llama(root / "teacher", layers=4)
    teacher = load_teacher(teacher_dir)
    decoding = Decoding(max_new_tokens=MAX_NEW)
    rendered, keys = teacher.generation_keys(PROMPTS, "v1", decoding, 8)
    generations = teacher.generate(rendered, keys, decoding, 8)
    dirs = {}
    for name, layers in (("student", [0, 3]), ("champion", [0, 1, 3])):
        model = layer_subset_student(teacher.model, layers)
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
        teacher.tokenizer.save_pretrained(dirs[name])
    return teacher, teacher_dir, generations, dirs


def _cfg(**gate):
    return config_from_dict({"generation": {"max_new_tokens": MAX_NEW}, "gate": {**LOOSE, **gate}})


def test_a_student_is_measured_against_teacher_and_champion(models, tmp_path):
    teacher, teacher_dir, generations, dirs = models
    out = {k: tmp_path / f"gate.{k}" for k in ("json", "md", "html")}
    report = evaluate_generation(teacher.model, teacher.tokenizer, dirs["student"], PROMPTS, generations, _cfg(),
                                 references=REFERENCES, champion_dir=dirs["champion"], teacher_dir=teacher_dir,
                                 context={"data_version": "abc"}, report_json=out["json"], report_md=out["md"],
                                 report_html=out["html"])
    assert set(report) == {"passed", "reasons", "checks", "models", "compression", "speed", "samples", "context"}
    assert report["passed"] is True and report["reasons"] == []
    assert set(report["models"]) == {"teacher", "student", "champion"}
    t, s, c = (report["models"][n] for n in ("teacher", "student", "champion"))
    # The teacher teacher-forced on its own cached greedy generations: the cache is its own.
    assert t["token_agreement"] == 1.0 and t["token_kl"] < 1e-3 and t["rouge_l"] == 1.0
    assert t["forced_tokens"] == sum(len(g.tokens) for g in generations) == s["forced_tokens"]
    for card in (s, c):
        assert 0 <= card["rouge_l"] <= 1 and 0 <= card["token_agreement"] <= 1 and card["teacher_nll"] > 0
        assert card["references"] == 2 and 0 <= card["reference_rouge_l"] <= 1
        for b in (1, 8):
            assert card[f"tokens_per_s_batch{b}"] > 0 and card[f"ttft_ms_batch{b}"] > 0
    assert s["parameters"] < c["parameters"] < t["parameters"] and 0 < s["size_bytes"] < t["size_bytes"]
    names = {ch["name"] for ch in report["checks"]}
    assert {"lm_rouge_l", "lm_nll_excess", "lm_speedup_batch1", "lm_speedup_batch8", "lm_parameter_fraction",
            "lm_reference_retention", "lm_champion_regression"} <= names
    assert [(r["model"], r["batch_size"]) for r in report["speed"]] == [
        (m, b) for b in (1, 8) for m in ("teacher", "student", "champion")]
    assert len(report["samples"]) == 3 and report["samples"][0]["prompt"] == PROMPTS[0]
    assert {"prompt", "reference", "teacher", "student", "champion", "student_rouge_l"} <= set(report["samples"][0])
    assert report["context"]["data_version"] == "abc" and report["context"]["references"] == 2
    assert json.loads(out["json"].read_text())["models"]["student"] == s
    page = out["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Benchmark gate (generation)" in page and "lm_speedup_batch8" in page and "data:image/png;base64," in page
    assert "&lt;script&gt;" in out["md"].read_text() and "<script>" not in out["md"].read_text()


def test_a_student_short_of_the_rouge_floor_is_refused_with_its_number(models, tmp_path):
    teacher, _, generations, dirs = models
    report = evaluate_generation(teacher.model, teacher.tokenizer, dirs["student"], PROMPTS, generations,
                                 _cfg(lm_min_rouge_l=1.0, lm_max_parameter_fraction=0.2),
                                 report_html=tmp_path / "gate.html")
    rouge = report["models"]["student"]["rouge_l"]
    assert rouge < 1.0  # a 2-layer subset of a random teacher does not reproduce it
    assert report["passed"] is False and "champion" not in report["models"]
    assert len(report["reasons"]) == 2
    assert report["reasons"][0].startswith("mean ROUGE-L F1 of the student's answers against the teacher's "
                                           f"generations: {rouge:.4f} (required >= 1) FAILED")
    assert "parameters" in report["reasons"][1] and "(required <= 0.2) FAILED" in report["reasons"][1]
    page = (tmp_path / "gate.html").read_text()
    assert "FAIL" in page and "The student was refused" in page


def test_bad_inputs_are_clear_errors(models):
    teacher, _, generations, dirs = models
    with pytest.raises(ValueError, match="3 cached teacher generations for 4 held-out prompts"):
        evaluate_generation(teacher.model, teacher.tokenizer, dirs["student"], PROMPTS, generations[:3], _cfg())
    with pytest.raises(ValueError, match="1 reference responses for 4 prompts"):
        evaluate_generation(teacher.model, teacher.tokenizer, dirs["student"], PROMPTS, generations, _cfg(),
                            references=["x"])


def test_a_champion_with_another_tokenizer_is_measured_on_its_answers(models, tmp_path, monkeypatch):
    import tests.tiny_lm as tiny_lm

    teacher, _, generations, dirs = models
    monkeypatch.setattr(tiny_lm, "WORDS", [*tiny_lm.WORDS, "banana"])
    other = make_tiny_llama(tmp_path / "other-vocab", layers=1, seed=3)
    report = evaluate_generation(teacher.model, teacher.tokenizer, dirs["student"], PROMPTS, generations, _cfg(),
                                 champion_dir=other, report_md=tmp_path / "gate.md")
    champion = report["models"]["champion"]
    assert "another tokenizer" in champion["note"] and "token_agreement" not in champion
    assert 0 <= champion["rouge_l"] <= 1 and champion["parameters"] > 0
    assert {r["model"] for r in report["speed"]} == {"teacher", "student"}
    assert any(c["name"] == "lm_champion_regression" for c in report["checks"])
    assert "| token agreement (teacher-forced) |" in (tmp_path / "gate.md").read_text()
    # A student with another tokenizer is an error before anything is measured.
    with pytest.raises(ModelError, match="tokenizer differs from the teacher's"):
        evaluate_generation(teacher.model, teacher.tokenizer, other, PROMPTS, generations, _cfg())
