import json

import pytest

from components.common.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_from_json,
    config_hash,
    config_to_json,
    load_config,
)
from pipelines.parameters import step_config_json


def test_defaults_validate_and_roundtrip():
    cfg = load_config()
    assert cfg == Config()
    assert config_from_json(step_config_json(cfg, "train_student")) == cfg  # partial configs fill defaults


def test_repo_params_yaml_matches_the_schema(tmp_path):
    from pathlib import Path

    params = Path(__file__).parents[2] / "params.yaml"
    assert load_config(params) == Config()  # the file documents the defaults, it does not change them


def test_generative_students_get_their_own_registered_name_by_default():
    assert config_from_dict({}).student.registered_name == "distillops-student"
    generation = config_from_dict({}, ["task=generation"])
    assert generation.student.registered_name == "distillops-lm-student"
    assert config_from_json(config_to_json(generation)) == generation  # the steps see the same name
    named = config_from_dict({"task": "generation", "student": {"registered_name": "support-bot"}})
    assert named.student.registered_name == "support-bot"


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"distill\.temprature"):
        config_from_dict({"distill": {"temprature": 2}})


def test_wrong_type_names_the_key_and_value():
    with pytest.raises(ConfigError, match=r"distill\.temperature: expected a number, got 'hot'"):
        config_from_dict({"distill": {"temperature": "hot"}})


def test_override_path_and_bad_override():
    cfg = config_from_dict({}, ["distill.epochs=2", "student.layers=[1, 3]"])
    assert cfg.distill.epochs == 2 and cfg.student.layers == (1, 3)
    with pytest.raises(ConfigError, match="expected key.path=value"):
        config_from_dict({}, ["distill.epochs"])


def test_invalid_values_are_all_reported():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"distill": {"alpha": 2.0, "temperature": 0}})
    assert "distill.alpha" in str(err.value) and "distill.temperature" in str(err.value)


def test_factorized_embeddings_are_the_default_and_can_be_turned_off():
    assert Config().student.factorize_embeddings
    assert not config_from_dict({"student": {"factorize_embeddings": False}}).student.factorize_embeddings
    assert config_from_dict({"student": {"shape": "manual"}}).student.factorize_embeddings  # no effect untrimmed


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gate:\n  min_speedup: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: gate\.min_speedup"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_config_hash_follows_training_settings_only():
    base = config_hash(Config())
    assert config_hash(config_from_dict({"distill": {"epochs": 9}})) != base
    assert config_hash(config_from_dict({"gate": {"min_speedup": 9.0}})) == base


def test_step_sections_are_minimal():
    cfg = Config()
    assert set(json.loads(step_config_json(cfg, "version_data"))) == {"data"}
    assert "gate" not in json.loads(step_config_json(cfg, "train_student"))


def test_distill_loss_keys_and_layer_map_from_overrides():
    from components.common.config import ConfigError, config_from_dict, layer_pairs

    cfg = config_from_dict({}, ["distill.losses={kl: 0.5, ce: 0.5, pooled_mse: 1}", "distill.layer_map={2: 4, 1: 2}"])
    assert cfg.distill.losses == {"kl": 0.5, "ce": 0.5, "pooled_mse": 1}
    assert layer_pairs(cfg.distill) == ((1, 2), (2, 4))
    assert config_from_dict({}).distill.losses == {}  # default: Hinton's mix from temperature/alpha
    with pytest.raises(ConfigError, match="distill.losses.kl: expected a weight >= 0"):
        config_from_dict({"distill": {"losses": {"kl": "high"}}})
    with pytest.raises(ConfigError, match="distill.layer_map: expected student layer: teacher layer"):
        config_from_dict({"distill": {"layer_map": {"first": 2}}})
    with pytest.raises(ConfigError, match="distill.teacher_weights: 1 weights for 2 teachers"):
        config_from_dict({"distill": {"extra_teachers": ["x"], "teacher_weights": [1]}})
    with pytest.raises(ConfigError, match="student.model: init=model needs"):
        config_from_dict({"student": {"init": "model"}})


def test_student_shaping_options_are_checked():
    from components.common.config import ConfigError, config_from_dict

    cfg = config_from_dict({"student": {"prune_intermediate": 768, "trim_vocabulary": True,
                                        "max_parameter_fraction": 0.25}})
    assert (cfg.student.prune_intermediate, cfg.student.trim_vocabulary) == (768, True)
    assert (Config().student.shape, Config().student.max_parameter_fraction, Config().student.min_speedup) == \
        ("budget", 0.25, 3.0)  # the budget a student is shaped to by default
    assert Config().gate.min_speedup == Config().student.min_speedup  # and the gate holds it to that
    with pytest.raises(ConfigError, match="student.shape: expected 'budget' or 'manual', got 'small'"):
        config_from_dict({"student": {"shape": "small"}})
    with pytest.raises(ConfigError, match="student.min_speedup: must be >= 0"):
        config_from_dict({"student": {"min_speedup": -1}})
    with pytest.raises(ConfigError, match=r"student.max_parameter_fraction: must be in \[0, 1\), got 1.5"):
        config_from_dict({"student": {"trim_vocabulary": True, "max_parameter_fraction": 1.5}})
    with pytest.raises(ConfigError, match="student.prune_intermediate: must be >= 0, got -1"):
        config_from_dict({"student": {"prune_intermediate": -1}})


def test_the_teacher_fan_out_settings_are_checked():
    cfg = config_from_dict({"cache": {"shards": 4, "flush_rows": 64}})
    assert (cfg.cache.shards, cfg.cache.flush_rows) == (4, 64)
    assert (Config().cache.shards, Config().cache.flush_rows) == (1, 256)  # one worker unless asked
    with pytest.raises(ConfigError, match="cache.shards: must be >= 1, got 0") as err:
        config_from_dict({"cache": {"shards": 0, "flush_rows": 0}})
    assert "cache.flush_rows: must be >= 1, got 0" in str(err.value)  # every problem at once


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads 3e-4 as a string; `--set distill.learning_rate=3e-4` must still mean 0.0003
    cfg = config_from_dict({}, ["distill.learning_rate=3e-4", "generation.learning_rate=5E-5"])
    assert cfg.distill.learning_rate == pytest.approx(3e-4) and cfg.generation.learning_rate == pytest.approx(5e-5)
    for bad in ("fast", "nan", "inf"):
        with pytest.raises(ConfigError, match=rf"distill\.learning_rate: expected a number, got '{bad}'"):
            config_from_dict({}, [f"distill.learning_rate={bad}"])


def test_a_generative_student_trains_with_the_generation_sections_optimisation_keys(tmp_path):
    from components.train_student.runner import lm_settings

    cfg = config_from_dict({"task": "generation", "distill": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4,
                                                              "weight_decay": 0.05},
                            "generation": {"epochs": 3, "train_batch_size": 4, "learning_rate": 2e-4}})
    s = lm_settings(cfg, tmp_path)
    assert (s.epochs, s.batch_size, s.learning_rate) == (3, 4, 2e-4)
    assert s.weight_decay == 0.05 and s.max_length == cfg.generation.max_length  # the rest: distill's
    assert s.batch_size_key == "generation.train_batch_size"  # what an out-of-memory error tells to lower
    defaults = lm_settings(config_from_dict({"task": "generation"}), tmp_path)
    assert (defaults.epochs, defaults.batch_size, defaults.learning_rate) == (6, 8, 3e-4)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"generation": {"epochs": 0, "train_batch_size": 0, "learning_rate": 0}})
    assert all(f"generation.{k}" in str(err.value) for k in ("epochs", "train_batch_size", "learning_rate"))
