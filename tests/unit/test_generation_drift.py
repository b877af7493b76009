"""The generative drift loop's pure pieces: prompts merged into the next data version, the
disagreement signal from rates (1 - ROUGE-L for generated answers), and the config keys."""

from __future__ import annotations

import pytest

from components.common.config import ConfigError, config_from_dict
from components.monitor_drift.core import DriftInputError, disagreement_from_rates
from components.prepare_redistill.core import merge_prompts


def test_merge_prompts_keeps_references_and_adds_new_prompts_without_a_response():
    reference = [("Where is my card?", "It is on its way."), ("Reset my password", None), ("where is my  card?", "x")]
    merged = merge_prompts(reference, ["WHERE is my card?", "Cancel my order", "Cancel my order", "Refund please"],
                           max_added=1, prompt_column="q", response_column="a")
    assert merged.rows == [{"q": "Where is my card?", "a": "It is on its way."}, {"q": "Reset my password", "a": None},
                           {"q": "Cancel my order", "a": None}]
    assert (merged.kept, merged.added) == (2, 1)
    assert merged.already_present == 2  # the near-duplicate of a reference prompt, and the repeat
    with pytest.raises(ValueError, match="redistill_max_rows"):
        merge_prompts(reference, [], max_added=-1)


def test_disagreement_from_rates_drifts_on_an_increase_above_the_threshold():
    calm = disagreement_from_rates(0.30, 0.35, 50, 0.10)
    assert calm["drifted"] is False and calm["increase"] == pytest.approx(0.05) and calm["n_production"] == 50
    assert disagreement_from_rates(0.30, 0.45, 50, 0.10)["drifted"] is True
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(DriftInputError, match="production disagreement rate"):
            disagreement_from_rates(0.1, bad, 5, 0.1)
    with pytest.raises(DriftInputError, match="0 production rows"):
        disagreement_from_rates(0.1, 0.2, 0, 0.1)


@pytest.mark.parametrize("tree, message", [
    ({"drift": {"lm_disagreement_sample": 0}}, "drift.lm_disagreement_sample: must be >= 1"),
    ({"gate": {"lm_trigger_sample": 0}}, "gate.lm_trigger_sample: must be >= 1"),
    ({"gate": {"lm_max_trigger_disagreement": 1.5}}, "gate.lm_max_trigger_disagreement: expected a share"),
])
def test_generative_drift_keys_are_validated(tree, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(tree)
