import numpy as np

from components.benchmark_gate.core import agreement, classification_metrics, evaluate_gate, render_markdown
from components.common.config import GateConfig
from components.promote.core import plan_promotion

TEACHER = {"accuracy": 0.90, "macro_f1": 0.9, "throughput_rows_per_s": 100.0, "latency_p50_ms": 10.0,
           "parameters": 1000, "size_bytes": 4000, "agreement": 1.0}


def card(acc, speed, agree=0.95):
    return {**TEACHER, "accuracy": acc, "throughput_rows_per_s": speed, "agreement": agree}


def test_metrics():
    m = classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert m["accuracy"] == 0.75
    assert abs(m["macro_f1"] - (1 + 2 / 3 + 2 / 3) / 3) < 1e-9
    assert agreement(np.array([1, 2, 3]), np.array([1, 2, 0])) == 2 / 3


def test_gate_passes_when_every_check_holds():
    result = evaluate_gate(card(0.89, 350), TEACHER, None, GateConfig())  # 3.5x >= the default 3x
    assert result.passed and result.reasons == []


def test_gate_collects_every_failure_with_numbers():
    champion = card(0.95, 300)
    result = evaluate_gate(card(0.80, 150), TEACHER, champion, GateConfig())
    assert not result.passed
    names = {c.name for c in result.checks if not c.passed}
    assert names == {"accuracy_retention", "speedup", "champion_regression"}
    text = " | ".join(result.reasons)
    assert "0.8889" in text and "1.5000" in text and "0.9500 -> 0.8000" in text
    md = render_markdown(result, {"data_version": "abc"})
    assert "FAILED" in md and "champion" in md and "❌" in md


def test_promotion_plan_cases():
    assert plan_promotion(False, ["too slow"], None, "1").action == "refuse"
    assert "too slow" in plan_promotion(False, ["too slow"], None, "1").reasons
    assert plan_promotion(True, [], "3", "3").action == "noop"
    p = plan_promotion(True, [], "2", "3")
    assert (p.action, p.version, p.previous) == ("alias_existing", "2", "3")
    p = plan_promotion(True, [], None, "3")
    assert (p.action, p.previous) == ("register", "3")
    assert plan_promotion(True, [], None, None).previous is None
