"""benchmarks.pipeline_defaults --baselines: the overrides make labels-only students under their own
names, and the summary compares the distilled mean with each baseline's."""

import pytest

from benchmarks.pipeline_defaults import BASELINES, baseline_summary
from components.common.config import config_from_dict
from components.distillation.losses import resolve_losses


def test_baseline_overrides_train_on_labels_alone_under_their_own_names():
    user = ["distill.losses={kl: 0.5, ce: 0.5}", "distill.augment_copies=2"]  # a user's, overridden
    names = set()
    for name, extra in BASELINES.items():
        cfg = config_from_dict({}, [*user, *extra])
        assert resolve_losses(cfg.distill.losses, cfg.distill.alpha) == {"ce": 1.0}
        assert cfg.distill.augment_copies == 0
        assert cfg.student.registered_name != config_from_dict({}).student.registered_name
        names.add(cfg.student.registered_name)
        assert cfg.student.init_weights == ("pretrained" if "pretrained" in name else "teacher")
    assert len(names) == 2


def test_summary_gives_per_seed_mean_sd_and_which_baselines_distillation_beats():
    def rows(*accs):
        return [{"seed": s, "student_accuracy": a} for s, a in enumerate(accs)]

    out = baseline_summary({"distilled": rows(0.9, 0.8, 0.85), "baseline_finetuned_init": rows(0.86, 0.86, 0.86),
                            "baseline_pretrained_init": rows(0.7, 0.72, 0.74)})
    assert out["distilled"]["per_seed"] == {"0": 0.9, "1": 0.8, "2": 0.85}
    assert out["distilled"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert out["distilled"]["accuracy"]["std"] == pytest.approx(0.05)
    assert out["baseline_pretrained_init"]["accuracy"]["std"] == pytest.approx(0.02)
    assert out["distillation_beats"] == {"finetuned_init": False, "pretrained_init": True}


def test_a_finished_piece_is_saved_and_a_rerun_reuses_it_instead_of_recomputing(tmp_path):
    from benchmarks.pipeline_defaults import _resumable
    from components.common.home import Home

    home = Home.resolve(tmp_path / "home").ensure()
    calls = []

    def compute():
        calls.append(1)
        return {"seed": 0, "student_accuracy": 0.9}

    assert _resumable(home, "run-seed0", ["a=1"], compute) == {"seed": 0, "student_accuracy": 0.9}
    assert _resumable(home, "run-seed0", ["a=1"], compute) == {"seed": 0, "student_accuracy": 0.9}
    assert len(calls) == 1
    _resumable(home, "run-seed0", ["a=2"], compute)  # other overrides: another piece
    assert len(calls) == 2
    assert not list((home.root / "pipeline_defaults").glob("*.tmp"))
