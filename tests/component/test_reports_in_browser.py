"""The gate page and the drift page, opened in a real headless Chromium: what a person sees.

The gate page is rendered from a gate decision on realistic numbers (close calls that fail two
checks, budgets, a champion, the int8 teacher); the drift page from real Evidently runs on text
descriptors and embeddings, the teacher-student disagreement signal and the local Evidently
workspace, exactly as monitor_drift's runner composes them. Chromium prints the DOM after the
page's scripts ran (Evidently's report is a JavaScript app) and takes a screenshot.

Skipped when ``chromium`` is not installed, unless DISTILLOPS_REQUIRE_CHROMIUM=1 (CI), where a
missing browser fails the test.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from components.benchmark_gate.core import evaluate_gate
from components.benchmark_gate.report_html import render_html
from components.common.config import GateConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("DISTILLOPS_REQUIRE_CHROMIUM") == "1":
            pytest.fail("DISTILLOPS_REQUIRE_CHROMIUM=1 but no chromium on PATH (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def open_in_chromium(browser: str, page: Path, shot: Path, height: int = 6000) -> str:
    """(the DOM after scripts ran; the screenshot is written to ``shot``)."""
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
              "--no-first-run", "--disable-extensions", f"--user-data-dir={page.parent / 'chromium-profile'}",
              "--virtual-time-budget=15000"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True).stdout
    subprocess.run([*common, f"--screenshot={shot}", f"--window-size=1280,{height}", url], capture_output=True,
                   timeout=180, check=True)
    return dom


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours or [])


def table_cells(dom: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", dom, flags=re.S)]


def _gate_page() -> str:
    labels = ["billing", "shipping", "refund"]

    def per_label(f1s):
        return {k: {"support": 30, "recall": f, "f1": f} for k, f in zip(labels, f1s, strict=True)}

    teacher = {"accuracy": 0.968, "macro_f1": 0.961, "agreement": 1.0, "throughput_rows_per_s": 210.0,
               "latency_p50_ms": 9.1, "latency_p90_ms": 11.2, "latency_p99_ms": 15.0, "parameters": 22_700_000,
               "size_bytes": 90_900_000, "labels": per_label([0.97, 0.95, 0.96])}
    student = {"accuracy": 0.942, "macro_f1": 0.930, "agreement": 0.951, "kl_to_teacher": 0.08,
               "throughput_rows_per_s": 820.0, "latency_p50_ms": 2.9, "latency_p90_ms": 3.4, "latency_p99_ms": 5.1,
               "parameters": 2_950_000, "size_bytes": 11_800_000, "robustness": {"typos": 0.90},
               "labels": per_label([0.95, 0.90, 0.94])}
    champion = {**student, "accuracy": 0.955, "macro_f1": 0.947, "throughput_rows_per_s": 700.0,
                "parameters": 3_400_000, "size_bytes": 13_600_000}
    teacher_int8 = {"accuracy": 0.965, "macro_f1": 0.958, "agreement": 0.99, "throughput_rows_per_s": 380.0,
                    "latency_p50_ms": 6.0, "latency_p90_ms": 7.5, "latency_p99_ms": 9.9, "parameters": 22_700_000}
    # 0.942 / 0.968 = 0.9731 misses a 0.975 retention floor; 0.955 -> 0.942 is a 0.013 drop (> 0.01).
    policy = GateConfig(min_accuracy_retention=0.975, max_latency_p50_ms=4.0, min_label_f1=0.85)
    result = evaluate_gate(student, teacher, champion, policy, teacher_int8)
    assert {c.name for c in result.checks if not c.passed} == {"accuracy_retention", "champion_regression"}
    gold = [[28, 1, 1], [2, 27, 1], [0, 1, 29]]
    vs_teacher = [[29, 1, 0], [1, 28, 0], [0, 2, 29]]
    return render_html(result, {"data_version": "d41d8cd9", "champion_version": "3", "test_rows": 90}, gold,
                       labels, {"student_vs_teacher": vs_teacher})


def test_the_gate_page_reads_in_a_browser(chromium, tmp_path):
    page = tmp_path / "gate.html"
    page.write_text(_gate_page())
    shot = Path(os.environ.get("DISTILLOPS_SHOTS", tmp_path)) / "gate.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    dom = open_in_chromium(chromium, page, shot, height=7000)

    assert "Benchmark gate:" in dom and '<span class="verdict fail">FAIL</span>' in dom
    assert dom.count("<table") >= 5  # checks, models, per-label, two confusion matrices
    cells = table_cells(dom)
    # the checks with their numbers, as text: the two close calls fail, the others pass
    assert cells.count("FAIL") == 2 and cells.count("PASS") >= 5
    assert "0.9731" in cells and "≥ 0.975" in cells and "-0.0019" in cells  # retention, its floor, its margin
    assert "0.0130" in cells and "≤ 0.01" in cells  # the drop against the champion
    # models side by side, with the latency spread and the int8 teacher
    for value in ("0.9420", "0.9680", "2.90", "5.10", "15.00", "820.0", "2,950,000", "22,700,000"):
        assert value in cells, value
    assert "teacher_int8" in dom and "champion v3" in dom
    # the headline: parameters 2.95M / 22.7M = 0.130, 820 / 210 rows/s = 3.90x
    assert "7.7x fewer" in dom and "3.90x faster" in dom
    # per-label F1 of teacher and student, with the student - teacher difference
    assert "-0.0500" in cells  # shipping: 0.90 - 0.95
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', dom)) >= 7
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    assert shot.stat().st_size > 50_000 and distinct_colours(shot) > 200


def _drift_page(tmp_path) -> tuple[str, dict]:
    import pandas as pd

    from components.monitor_drift.core import (
        DriftPolicy,
        combine_signals,
        decide_drift,
        disagreement_result,
        text_descriptors,
    )
    from components.monitor_drift.evidently_report import (
        run_drift_report,
        run_embedding_drift_report,
        save_to_workspace,
    )
    from components.monitor_drift.report_html import add_signals_section, render_signals_section

    rng = random.Random(0)
    polite = [f"where is my order {rng.choice(['please', 'today', 'now'])}" for _ in range(150)]
    shouting = [f"REFUND {rng.randint(10_000, 99_999)} NOW!!! ORDER {rng.randint(1, 999)}" for _ in range(150)]

    def frame(texts, share):
        f = text_descriptors(texts)
        f["predicted_label"] = ["refund" if rng.random() < share else "shipping" for _ in texts]
        return f

    ref_frame, prod_frame = frame(polite, 0.3), frame(shouting, 0.8)
    policy = DriftPolicy()
    descriptors = run_drift_report(ref_frame, prod_frame, "predicted_label", policy)
    columns, label = descriptors.results["columns"], descriptors.results["label"]
    gen = np.random.default_rng(0)
    embeddings = run_embedding_drift_report(gen.normal(size=(120, 8)), gen.normal(size=(120, 8)) + 1.0, 0.55)
    disagreement = disagreement_result([0] * 95 + [1] * 5, [0] * 100, [0] * 70 + [1] * 30, [0] * 100, 0.1)
    verdict = combine_signals(decide_drift(columns, label, policy, len(ref_frame), len(prod_frame)),
                              embeddings.results, disagreement)
    verdict.update(model="distillops-student/v3", reference_data_version="d41d8cd9",
                   reference_label_share=pd.Series(ref_frame["predicted_label"]).value_counts(normalize=True).to_dict(),
                   production_label_share=pd.Series(prod_frame["predicted_label"]).value_counts(
                       normalize=True).to_dict())
    verdict["evidently_workspace"] = save_to_workspace(str(tmp_path / "evidently"), "distillops-student",
                                                       [("descriptors", descriptors), ("embeddings", embeddings)])
    html = add_signals_section(descriptors.html, render_signals_section(verdict, columns, label,
                                                                        policy.column_drift_share))
    return html, verdict


def test_the_drift_page_shows_every_signal_in_a_browser(chromium, tmp_path):
    html, verdict = _drift_page(tmp_path)
    assert set(verdict["signals"]) == {"descriptors_or_labels", "embeddings", "teacher_student_disagreement"}
    page = tmp_path / "drift.html"
    page.write_text(html)
    shot = Path(os.environ.get("DISTILLOPS_SHOTS", tmp_path)) / "drift.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    dom = open_in_chromium(chromium, page, shot, height=4000)

    assert '<span class="verdict drift">DRIFT</span>' in dom
    cells = table_cells(dom)
    for signal in ("descriptor length", "share of drifted descriptors", "predicted-label distribution",
                   "embeddings (domain classifier)", "teacher-student disagreement"):
        assert signal in cells, signal
    # the disagreement signal with its numbers: 30% vs 5%, an increase of 0.25 over an allowed 0.1
    assert "0.25" in cells and "0.1" in cells and any("30.0% of 100 production inputs vs 5.0%" in c for c in cells)
    assert cells.count("DRIFT") >= 3
    # the embedding score and the label shares
    assert f"{verdict['embedding']['score']:.4g}" in cells
    assert "refund" in cells and "shipping" in cells
    # the workspace that keeps drift over time
    ws = verdict["evidently_workspace"]
    assert ws["path"] in dom and "evidently ui --workspace" in dom
    from evidently.ui.workspace import Workspace

    assert len(Workspace(ws["path"]).list_runs(ws["project_id"])) == 2
    # Evidently's own report ran below the section (its app renders the drift table)
    assert "Dataset Drift is detected" in dom and "Share of Drifted Columns" in dom
    assert '<img alt="label distribution and disagreement"' in dom
    assert shot.stat().st_size > 50_000 and distinct_colours(shot) > 200
