"""cache_teacher_outputs + train_student runners with composed losses: the cache stores exactly the
mapped layers' features (by content), the trainer reads them, the lineage names every teacher."""

import json

import pytest
from fakes import factorizing_fraction, make_rows, make_tiny_teacher, write_jsonl
from safetensors import safe_open

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.keyed import RegistryKeyError
from components.train_student import runner as train_step
from components.version_data import runner as version_step


def version_and_cache(home, tmp_path, teacher, cfg):
    """version_data on 60 fresh rows, then cache_teacher_outputs: (snapshot, outputs, version result, cache result)."""
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")),
                         cfg, str(snap))
    outputs = tmp_path / "t.safetensors"
    cached = cache_step.run(str(home), str(snap), str(teacher), cfg,
                            str(outputs))
    return snap, outputs, v, cached


def test_composed_losses_through_the_cache_and_multi_teacher(home, tmp_path, tiny_teacher):
    second = make_tiny_teacher(tmp_path / "second", seed=1)
    cfg = config_from_dict({
        "student": {"init": "config", "config_overrides": {"hidden_size": 16, "num_attention_heads": 2,
                                                           "intermediate_size": 32, "num_hidden_layers": 2}},
        "distill": {"epochs": 1, "augment_copies": 0, "losses": {"kl": 0.5, "ce": 0.5, "pooled_mse": 1.0, "sp": 0.5},
                    "layer_map": {"1": 2, "2": 4}, "extra_teachers": [str(second)], "teacher_weights": [2, 1],
                    "checkpoint_every": 2}})
    snap, outputs, v, first = version_and_cache(home, tmp_path, tiny_teacher, cfg)
    assert first["teacher_forward_passes"] == 60
    with safe_open(str(outputs), framework="numpy") as f:
        # mapped layers + last (for sp), and the extra teacher's logits (made by the cache step, not by training)
        assert sorted(f.keys()) == ["logits", "logits@1", "pooled:2", "pooled:4"]
        assert f.get_tensor("pooled:2").shape == (60, 32)
    again = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg,
                           str(tmp_path / "t2.safetensors"))
    assert again["teacher_forward_passes"] == 0  # features are cached by content like the logits

    out = tmp_path / "student"
    result = train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher),
                            cfg, v["data_version"], str(out), "hash0")
    lineage = json.loads((out / "distillops.json").read_text())
    assert lineage["extra_teachers"][0]["ref"] == str(second)
    assert lineage["extra_teachers"][0]["teacher_version"].startswith("local+sha256:")
    assert result["parameters"] < 60_000
    assert not list((home / "checkpoints").glob(f"train_student-hash0-{v['data_version']}*"))  # finished: removed

    bad = config_from_dict({"distill": {"losses": {"kl_div": 1.0}}})
    with pytest.raises(RegistryKeyError, match="unknown loss key 'kl_div'"):
        train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), bad,
                       v["data_version"], str(tmp_path / "bad"), "hash1")
    assert not (tmp_path / "bad").exists()


def test_pruned_trimmed_student_carries_its_own_tokenizer(home, tmp_path, tiny_teacher):
    from components.common.modeling import load_classifier, predict_logits
    from components.distillation.measure import count_parameters

    cfg = config_from_dict({
        "student": {"shape": "manual", "init": "teacher_layers", "layers": [0, 1], "prune_intermediate": 16, "trim_vocabulary": True,
                    "max_parameter_fraction": 0.6},
        "distill": {"epochs": 1, "max_length": 24}})
    snap, outputs, v, _ = version_and_cache(home, tmp_path, tiny_teacher, cfg)
    out = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg,
                   v["data_version"], str(out), "hash2")
    teacher, t_tok = load_classifier(tiny_teacher)
    student, s_tok = load_classifier(out)
    assert student.config.intermediate_size == 16
    assert student.config.max_position_embeddings == 24
    assert len(s_tok.get_vocab()) == student.config.vocab_size < len(t_tok.get_vocab())
    assert count_parameters(student) <= 0.6 * count_parameters(teacher)
    texts = [r["text"] for r in make_rows(5)]
    assert predict_logits(student, s_tok, texts, 24).shape == (5, teacher.config.num_labels)

    token_level = config_from_dict({"student": {"shape": "manual", "trim_vocabulary": True},
                                    "distill": {"losses": {"ce": 1.0, "hidden_mse": 1.0}, "layer_map": {"1": 1}}})
    with pytest.raises(ValueError, match="trim_vocabulary gives the student its own token ids"):
        train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher),
                       token_level, v["data_version"], str(tmp_path / "bad"), "h3")
    assert not (tmp_path / "bad").exists()


def test_a_factored_student_is_trained_saved_and_read_back_with_every_piece(home, tmp_path):
    """student.factorize_embeddings through the student step: the saved student is an ALBERT classifier
    within the parameter budget that keeps the whole trimmed vocabulary, and it loads and predicts
    like any student (Auto classes, its own tokenizer)."""
    from components.common.modeling import load_classifier, predict_logits
    from components.distillation.measure import count_parameters
    from components.distillation.students import (
        MIN_EMBEDDING_RANK,
        build_student_from_teacher_layers,
        trim_vocabulary,
    )

    wide = make_tiny_teacher(tmp_path / "wide", hidden=64)
    teacher, t_tok = load_classifier(wide)
    texts = [r["text"] for r in make_rows(60)]
    fraction = factorizing_fraction(wide, texts, [0, 3], 24)
    cfg = config_from_dict({
        "student": {"shape": "manual", "layers": [0, 3], "trim_vocabulary": True, "factorize_embeddings": True,
                    "max_parameter_fraction": fraction},
        "distill": {"epochs": 1, "max_length": 24, "augment_copies": 0}})
    snap, outputs, v, _ = version_and_cache(home, tmp_path, wide, cfg)
    out = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(wide), cfg, v["data_version"], str(out), "hashf")
    student, s_tok = load_classifier(out)
    assert type(student).__name__ == "AlbertForSequenceClassification"
    assert student.config.embedding_size >= MIN_EMBEDDING_RANK
    budget = int(fraction * count_parameters(teacher))
    assert count_parameters(student) <= budget
    # every piece of the training split (the ~70% of rows it trims to) is kept: at full width the
    # same vocabulary would not have fitted
    full_width, _ = trim_vocabulary(build_student_from_teacher_layers(teacher, [0, 3]), t_tok, texts, max_positions=24)
    assert len(s_tok.get_vocab()) == student.config.vocab_size > 0.8 * full_width.config.vocab_size
    body = count_parameters(student) - sum(p.numel() for n, p in student.named_parameters()
                                           if ".embeddings." in n or "embedding_hidden_mapping_in" in n)
    assert body + (student.config.vocab_size + 24 + 2) * 64 + 2 * 64 > budget
    assert predict_logits(student, s_tok, texts[:5], 24).shape == (5, teacher.config.num_labels)


def test_augmented_transfer_set_is_cached_by_content_and_trained_on(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]},
                            "distill": {"epochs": 1, "augment_copies": 2, "losses": {"kl": 0.9, "ce": 0.1}}})
    snap, outputs, v, first = version_and_cache(home, tmp_path, tiny_teacher, cfg)
    n_train = sum(1 for line in snap.read_text().splitlines() if '"split": "train"' in line)
    assert first["augmented_rows"] == 2 * n_train > 0
    assert 0 < first["augmented_forward_passes"] <= 2 * n_train  # duplicates share one cached row
    again = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg,
                           str(tmp_path / "t2.safetensors"))
    assert again["teacher_forward_passes"] == again["augmented_forward_passes"] == 0
    with safe_open(str(outputs), framework="numpy") as f:
        assert f.get_tensor("augment/logits").shape[0] == 2 * n_train

    out = tmp_path / "student"
    result = train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher),
                            cfg, v["data_version"], str(out), "hash4")
    assert result["train_rows"] == 3 * n_train
    assert result["augment"]["rows"] == 2 * n_train

    other_seed = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]},
                                   "distill": {"epochs": 1, "augment_copies": 2, "seed": 7}})
    with pytest.raises(ValueError, match=r"augment_copies=2 \(2 copies of \d+ training rows, seed 7\) needs the teacher's outputs"):
        train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher),
                       other_seed, v["data_version"], str(tmp_path / "bad"), "h5")
    assert not (tmp_path / "bad").exists()
