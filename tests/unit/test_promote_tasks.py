"""promote's task awareness (issue 14), without a registry: which task a student directory holds
(its config.json, checked against its lineage), gate reports bound to their task, the figures a
version is tagged with per task, and how a causal LM's chat template becomes MLflow's prompt template."""

from __future__ import annotations

import json

import pytest

from components.common.lineage import LineageError, student_task, write_lineage
from components.common.tracking import generation_inference_config, prompt_template
from components.promote.core import binding_problems, report_task
from components.promote.runner import GateReportRejected, gate_metrics, max_new_tokens, student_figure_tags
from tests.tiny_lm import make_tokenizer

BOUND = {"model_digest": "d1", "data_version": "v1", "teacher_version": "t1", "config_hash": "c1"}
LINEAGE = {"data_version": "v1", "teacher_version": "t1", "teacher_ref": "models:/t@champion", "config_hash": "c1",
           "mlflow_run_id": "r1"}


def _dir(tmp_path, architectures, **lineage):
    d = tmp_path / "student"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"architectures": architectures}))
    write_lineage(d, {**LINEAGE, **lineage})
    return d


def test_the_model_config_decides_the_task_and_the_lineage_must_agree(tmp_path):
    assert student_task(_dir(tmp_path, ["LlamaForCausalLM"], task="generation")) == "generation"
    # a classifier from before tasks: no task in its lineage or its resolved config
    assert student_task(_dir(tmp_path, ["BertForSequenceClassification"], config={"data": {}})) == "classification"
    assert student_task(_dir(tmp_path, ["LlamaForCausalLM"])) == "generation"
    with pytest.raises(LineageError, match="lineage's resolved config task is 'classification'.*generation model"):
        student_task(_dir(tmp_path, ["LlamaForCausalLM"], config={"task": "classification"}))
    with pytest.raises(LineageError, match="lineage's task is 'generation'.*classification model"):
        student_task(_dir(tmp_path, ["BertForSequenceClassification"], task="generation"))
    with pytest.raises(LineageError, match=r"architectures \['BertModel'\] name no single task"):
        student_task(_dir(tmp_path, ["BertModel"]))


def test_a_gate_report_is_bound_to_its_task():
    classification = {"passed": True, "context": dict(BOUND)}
    generation = {"passed": True, "context": {**BOUND, "task": "generation"}}
    assert (report_task(classification), report_task(generation)) == ("classification", "generation")
    assert binding_problems(classification, BOUND, "classification") == []
    assert binding_problems(generation, BOUND, "generation") == []
    assert binding_problems(classification, BOUND, "generation") == [
        "task: the gate report is the classification gate's, the student is a generation model"]
    assert binding_problems(generation, BOUND, "classification") == [
        "task: the gate report is the generation gate's, the student is a classification model"]
    # the task is one problem among the others, all reported at once
    forged = binding_problems({"passed": True, "context": {"task": "generation"}}, BOUND, "classification")
    assert len(forged) == 1 + len(BOUND)


def test_version_figures_per_task():
    generation = {"models": {"student": {"rouge_l": 0.5, "token_agreement": 0.61234, "exact_match": None}},
                  "checks": [{"name": "lm_rouge_l", "value": 0.5}]}
    assert student_figure_tags(generation, "generation") == {"student_rouge_l": "0.5000",
                                                             "student_token_agreement": "0.6123"}
    assert json.loads(gate_metrics(generation, "generation")) == {"lm_rouge_l": 0.5, "student_rouge_l": 0.5,
                                                                  "student_token_agreement": 0.6123,
                                                                  "student_exact_match": None}
    assert student_figure_tags({"models": {"student": {"accuracy": 0.9}}}, "classification") == {
        "student_accuracy": "0.9000"}
    with pytest.raises(GateReportRejected, match="models.student.accuracy is None; expected a number"):
        student_figure_tags({"models": {"student": {"rouge_l": 0.5}}}, "classification", "g.json")
    with pytest.raises(GateReportRejected, match="g.json: no models.student figures"):
        student_figure_tags({"passed": True}, "generation", "g.json")


def test_served_answer_length_comes_from_the_students_config():
    from components.common.config import config_from_dict

    cfg = config_from_dict({"generation": {"max_new_tokens": 9}})
    assert max_new_tokens({"config": {"generation": {"max_new_tokens": 17}}}, cfg) == 17
    assert max_new_tokens({}, cfg) == 9
    assert max_new_tokens({"config": {"generation": {"max_new_tokens": True}}}, cfg) == 9
    assert generation_inference_config(17) == {"do_sample": False, "return_full_text": False,
                                               "add_special_tokens": False, "max_new_tokens": 17}


class _Tokenizer:
    def __init__(self, template: str | None, render):
        self.chat_template, self._render = template, render

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return self._render(messages[0]["content"])


def test_the_chat_template_becomes_the_prompt_template():
    assert prompt_template(make_tokenizer()) == "<|user|> {prompt} <|assistant|> "
    # braces of the template itself are kept literally; the prompt goes where the user message goes
    braces = _Tokenizer("t", lambda p: '{"system": "be brief"} <user>' + p + "</user>")
    template = prompt_template(braces)
    assert template.format(prompt="a {b} c") == '{"system": "be brief"} <user>a {b} c</user>'
    assert prompt_template(_Tokenizer(None, str)) is None
    with pytest.raises(ValueError, match="2 times"):
        prompt_template(_Tokenizer("t", lambda p: p + p))
