"""task: generation through the real distillation DAG with kfp.local, as `distillops run --task
generation` starts it: a tiny random Llama registered as the causal-LM teacher (`distillops teacher
--task generation --base DIR`), a prompt file, a real sqlite MLflow registry, a DVC local remote and
the content-addressed teacher store; the gate's report is signed.

1. A gate threshold the tiny student cannot meet (at most 1% of the teacher's parameters): every
   step runs, every prompt goes to the teacher once, the gate refuses with that reason in the
   summary, record_refusal records it, nothing is registered.
2. The same run again: every step up to the gate is served from KFP's cache, 0 teacher calls.
3. Thresholds the tiny student meets (speed off: tiny models' speed-ups are noise): only the gate
   reruns and passes, and promote registers version 1 of the causal-LM student, tagged
   task=generation, with the champion alias on it.
"""

from __future__ import annotations

import json

import pytest
import yaml

from components.common import registry, signing
from components.common.home import Home
from components.common.steplog import steps_since
from pipelines.cli import main
from tests.tiny_lm import WORDS, make_tiny_llama

pytestmark = pytest.mark.slow

SIGNING_KEY = "generation-pipeline-test-key-0123456789"
STUDENT = "tiny-lm-student"
PROMPTS = 40
BASE = {
    "student": {"registered_name": STUDENT},
    "generation": {"max_new_tokens": 6, "top_k": 4, "batch_size": 8, "max_length": 48, "student_layers": [0, 3],
                   "epochs": 1, "train_batch_size": 8, "learning_rate": 1e-3},
    "cache": {"fidelity_sample": 4},
}
# Nothing gated that tiny random models make noise of (speed-ups, fidelity); the speed timing kept short.
LOOSE = {"lm_min_rouge_l": 0.0, "lm_min_token_agreement": 0.0, "lm_max_nll_excess": 0.0, "lm_min_speedup": 0.0,
         "lm_min_speedup_batch8": 0.0, "lm_max_parameter_fraction": 0.0, "lm_speed_new_tokens": 2,
         "lm_speed_repeats": 1, "lm_report_samples": 3}
# The layer-subset student keeps 2 of 4 layers and the embeddings: far above 1% of the teacher's parameters.
REFUSING = {**LOOSE, "lm_max_parameter_fraction": 0.01}


def _prompts(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 4)]
        rows.append({"prompt": " ".join(words) + f" {WORDS[i % len(WORDS)]} {WORDS[(i // len(WORDS)) % len(WORDS)]}"})
    assert len({r["prompt"] for r in rows}) == n
    return rows


def _run(world, gate: dict, capsys) -> tuple[int, dict | None, str]:
    config = world["root"] / "params.yaml"
    config.write_text(yaml.safe_dump({**BASE, "gate": gate}))
    code = main(["run", "--task", "generation", "--home", str(world["home"].root), "--data", str(world["data"]),
                 "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return code, (json.loads(lines[-1]) if lines else None), err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("generation-pipeline")
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv(signing.KEY_ENV, SIGNING_KEY)
    home = Home.resolve(root / "home")
    teacher_dir = make_tiny_llama(root / "tiny-llama", layers=4)
    # registered as generation.teacher_ref's default, models:/distillops-lm-teacher@champion
    assert main(["teacher", "--task", "generation", "--home", str(home.root), "--base", str(teacher_dir)]) == 0
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _prompts(PROMPTS)))
    yield {"root": root, "home": home, "data": data}
    mp.undo()


def _registered(home: Home) -> list:
    client = registry.connect(home)
    return [v for v in client.search_model_versions(f"name='{STUDENT}'")]


def test_generation_dag_refuses_caches_and_gates(world, capsys):
    home = world["home"]

    # 1. refused: the whole DAG ran, every prompt went to the teacher once, nothing registered
    code, first, err = _run(world, REFUSING, capsys)
    assert code == 3, err
    assert first["task"] == "generation"
    assert first["gate"]["passed"] is False
    assert any("parameter" in r and "0.01" in r for r in first["gate"]["reasons"]), first["gate"]["reasons"]
    assert first["promotion"]["action"] == "skipped (gate failed)"
    assert first["teacher_forward_passes"] == PROMPTS
    assert first["executed_steps"] == ["version_data", "cache_teacher_outputs", "train_student", "benchmark_gate",
                                       "record_refusal"]
    assert first["metrics"]["passed"] == 0 and first["metrics"]["parameter_ratio"] > 0.01
    assert _registered(home) == []
    html = first["reports"]["gate_html"]
    assert "<html" in open(html).read().lower()
    gate_json = json.loads(open(html[:-len(".html")] + ".json").read())
    assert gate_json["context"]["task"] == "generation" and gate_json["context"]["champion_version"] == "none"
    assert signing.verify_report(gate_json, SIGNING_KEY.encode()) == []  # signed by the gate
    # the refusal is in the promotion history
    audit = (home.root / "audit" / f"{STUDENT}.jsonl").read_text().splitlines()
    assert [json.loads(e)["record"]["action"] for e in audit] == ["refuse"]

    # 2. nothing changed: every step up to the gate served from KFP's cache, no teacher call
    code, second, err = _run(world, REFUSING, capsys)
    assert code == 3, err
    assert second["teacher_forward_passes"] == 0
    assert second["cached_steps"] == ["version_data", "cache_teacher_outputs", "train_student", "benchmark_gate"]
    assert second["executed_steps"] == ["record_refusal"]
    assert second["data_version"] == first["data_version"] and second["gate"] == first["gate"]

    # 3. thresholds the student meets: only the gate reruns (its slice changed), and passes
    code, third, err = _run(world, LOOSE, capsys)
    gate_json = json.loads(open(html[:-len(".html")] + ".json").read())  # same data version and config hash
    assert gate_json["passed"] is True and gate_json["reasons"] == []
    assert set(gate_json["models"]) == {"teacher", "student"}
    assert signing.verify_report(gate_json, SIGNING_KEY.encode()) == []
    assert gate_json["context"]["model_digest"] and gate_json["context"]["data_version"] == first["data_version"]
    # promote registers the causal-LM student as version 1, tagged with its task, as the champion
    assert code == 0, err
    assert third["promotion"] == {"action": "register", "version": "1"}
    versions = _registered(home)
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].tags["task"] == "generation"
    client = registry.connect(home)
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "1"
    audit = (home.root / "audit" / f"{STUDENT}.jsonl").read_text().splitlines()
    assert [json.loads(e)["record"]["action"] for e in audit] == ["refuse", "refuse", "promote"]


def _shifted(n: int) -> list[dict]:
    # The same words, asked very differently: long and full of numbers (the tiny tokenizer knows the
    # words only, lower-cased: the numbers are all one unknown token).
    return [{"prompt": " ".join(WORDS[(i * 3 + j * 5) % len(WORDS)] for j in range(14)) + f" #{i}0{i} 99{i} 7{i}"}
            for i in range(n)]


def test_generation_drift_starts_redistillation(world, capsys):
    """4. After case 3 promoted version 1: a batch of shifted production prompts drifts; the loop
    (`monitor --task generation --redistill`) adds them to the data, the teacher answers only them,
    once each (monitor_drift's sample of them, stored, then the rest in the cache step; the training
    prompts come from the cache), the student is retrained and gated on the triggering prompts too,
    and promote registers version 2 with the drift run in its lineage."""
    home = world["home"]
    client = registry.connect(home)
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "1", "needs case 3 first"
    config = world["root"] / "drift.yaml"
    config.write_text(yaml.safe_dump({
        **BASE, "gate": {**LOOSE, "lm_max_champion_regression": 1.0, "lm_trigger_sample": 8},
        # this test is about the loop's mechanics: every drifted batch redistils
        "drift": {"lm_disagreement_sample": 8, "trigger_on": ["any"], "cooldown_minutes": 0, "cooldown_runs": 0,
                  "max_redistills": 0, "redistill_min_rows": 0}}))
    production = world["root"] / "production.jsonl"
    production.write_text("".join(json.dumps(r) + "\n" for r in _shifted(20)))
    code = main(["monitor", "--task", "generation", "--redistill", "--home", str(home.root), "--production",
                 str(production), "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    loop = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert loop["drifted"] and loop["action"] == "redistill", (loop["reasons"], loop["action_reasons"])
    assert code == 0, err
    assert loop["executed_steps"] == ["monitor_drift", "prepare_redistill", "version_data", "cache_teacher_outputs",
                                      "train_student", "benchmark_gate", "promote"]
    assert loop["rows_added"] == 20
    assert loop["promotion"] == {"action": "register", "version": "2"}
    verdict = json.loads(open(loop["verdict_json"]).read())
    assert verdict["task"] == "generation" and verdict["disagreement"]["n_production"] == 8
    # monitor_drift read its 8 reference answers (training prompts) from the teacher store and had the
    # teacher answer its 8 production samples, which it stored: the redistillation's cache step then
    # answered only the other 12 new prompts. Across the loop every new prompt reached the teacher once
    # (8 in monitor_drift + 12 in the cache step), and none of the first 40.
    assert (verdict["disagreement"]["teacher_calls"], verdict["disagreement"]["teacher_answers_cached"]) == (8, 8)
    assert loop["teacher_forward_passes"] == 20
    steps = [s for s in steps_since(home, 0) if s["step"] in ("monitor_drift", "cache_teacher_outputs")]
    assert [(s["step"], s["teacher_forward_passes"]) for s in steps[-2:]] == [("monitor_drift", 8),
                                                                             ("cache_teacher_outputs", 12)]
    assert "ROUGE-L" in verdict["disagreement"]["measure"] and verdict["embedding"]["method"]
    assert verdict["production_label_share"] == {}
    champion = client.get_model_version_by_alias(STUDENT, "champion")
    assert str(champion.version) == "2" and champion.tags["task"] == "generation"
    assert champion.tags["trigger_drift_run_id"] == loop["drift_run_id"]
    assert champion.tags["data_version"] == loop["new_data_version"]
    gate = next(r for r in (json.loads(p.read_text()) for p in home.reports.glob("gate-*.json")) if "trigger_batch" in r)
    assert gate["trigger_batch"]["rows"] == 8 and gate["trigger_batch"]["champion_disagreement"] is not None
    assert {c["name"] for c in gate["checks"]} >= {"trigger_disagreement", "lm_champion_regression"}
    audit = (home.root / "audit" / f"{STUDENT}.jsonl").read_text().splitlines()
    assert [json.loads(e)["record"]["action"] for e in audit] == ["refuse", "refuse", "promote", "promote"]
