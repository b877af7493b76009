"""Generative students: layer-subset and narrow builders, the tokenizer check, the bucketed top-k
losses (exact where the cache holds the whole distribution), and a short distillation from cached
generations that lowers the NLL of the teacher's outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.common.generation import Decoding, render_prompts
from components.common.modeling import ModelError
from components.common.teachers import load_teacher
from components.distillation.lm_losses import (
    LM_LOSSES,
    LMLossConfigError,
    TokenBatch,
    bucket_log_probs,
    resolve_lm_losses,
)
from components.distillation.lm_students import (
    check_same_vocabulary,
    layer_subset_student,
    narrow_student,
    parameter_count,
)
from components.distillation.lm_trainer import (
    build_examples,
    build_reference_examples,
    finetune_on_references,
    teacher_nll,
    train_lm_student,
)
from components.distillation.trainer import TrainSettings
from tests.tiny_lm import make_tiny_llama

PROMPTS = [f"hello my card was declined {w}" for w in ("please", "thanks", "today", "yes", "no", "maybe")] + \
          [f"where is my order {w}" for w in ("please", "thanks", "today", "yes", "no", "maybe")]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_teacher(make_tiny_llama(tmp_path_factory.mktemp("lm") / "t", layers=4))


def _batch(n=5, vocab=11, k=3, seed=0, full=False):
    g = torch.Generator().manual_seed(seed)
    t_logits = torch.randn(n, vocab, generator=g)
    t_logp = torch.log_softmax(t_logits, -1)
    k = vocab if full else k
    top, ids = torch.topk(t_logp, k, -1)
    tail = (1 - top.exp().sum(-1)).clamp(min=0)
    return TokenBatch(torch.randn(n, vocab, generator=g, requires_grad=True), ids[:, 0], ids, top, tail), t_logp


def test_token_kl_is_the_exact_kl_when_k_covers_the_vocabulary():
    batch, t_logp = _batch(full=True)
    s_logp = torch.log_softmax(batch.student_logits, -1)
    exact = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
    assert torch.allclose(LM_LOSSES.get("token_kl")(batch), exact, atol=1e-4)
    reverse = (s_logp.exp() * (s_logp - t_logp)).sum(-1).mean()
    assert torch.allclose(LM_LOSSES.get("token_reverse_kl")(batch), reverse, atol=1e-4)


def test_buckets_are_distributions_and_the_losses_vanish_at_the_teacher():
    batch, t_logp = _batch()
    t, s = bucket_log_probs(batch)
    assert torch.allclose(t.exp().sum(-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(s.exp().sum(-1), torch.ones(5), atol=1e-5)
    batch.student_logits = t_logp.clone().requires_grad_(True)  # the student is the teacher
    for key in ("token_kl", "token_reverse_kl", "token_js"):
        assert float(LM_LOSSES.get(key)(batch).detach()) < 1e-4, key
    assert float(LM_LOSSES.get("token_js")(_batch(seed=1)[0]).detach()) <= math.log(2) + 1e-6


def test_every_loss_has_a_gradient_and_ref_ce_is_zero_without_references():
    batch, _ = _batch()
    for key, fn in LM_LOSSES.items():
        value = fn(batch)
        if key == "ref_ce":
            assert float(value) == 0.0
            continue
        (grad,) = torch.autograd.grad(value, batch.student_logits)
        assert grad.abs().sum() > 0, key


def test_loss_keys_and_weights_are_checked():
    assert resolve_lm_losses({}) == {"token_kl": 1.0, "seq_kd": 0.5}
    with pytest.raises(Exception, match="nope"):
        resolve_lm_losses({"nope": 1.0})
    with pytest.raises(LMLossConfigError, match="seq_kd: weight must be >= 0"):
        resolve_lm_losses({"seq_kd": -1})
    with pytest.raises(LMLossConfigError, match="every weight is 0"):
        resolve_lm_losses({"seq_kd": 0})


def test_layer_subset_copies_the_chosen_layers(teacher):
    student = layer_subset_student(teacher.model, [0, 3])
    assert student.config.num_hidden_layers == 2
    t, s = teacher.model.state_dict(), student.state_dict()
    assert torch.equal(s["model.layers.1.mlp.down_proj.weight"], t["model.layers.3.mlp.down_proj.weight"])
    assert torch.equal(s["model.embed_tokens.weight"], t["model.embed_tokens.weight"])
    assert parameter_count(student) < parameter_count(teacher.model)
    with pytest.raises(ModelError, match="teacher layer 4 out of range; the teacher has 4 decoder layers"):
        layer_subset_student(teacher.model, [0, 4])


def test_narrow_student_keeps_the_vocabulary(teacher):
    student = narrow_student(teacher.model, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    assert student.config.vocab_size == teacher.model.config.vocab_size
    out = student(torch.tensor([[1, 2, 3]])).logits
    assert out.shape == (1, 3, teacher.model.config.vocab_size)


def test_a_student_with_another_tokenizer_is_refused(teacher):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(teacher.tokenizer.backend_tokenizer.to_str()))
    check_same_vocabulary(teacher.tokenizer, other)  # same vocabulary: fine
    other.add_tokens(["zebra"])
    with pytest.raises(ModelError, match="tokenizer differs from the teacher's"):
        check_same_vocabulary(teacher.tokenizer, other)


def test_distilling_from_cached_generations_lowers_the_teacher_nll(teacher):
    d = Decoding(max_new_tokens=6)
    rendered, keys = teacher.generation_keys(PROMPTS, "v", d, 8)
    gens = teacher.generate(rendered, keys, d, 8, batch_size=6)
    examples = build_examples(teacher.tokenizer, rendered, gens, responses=["thanks a lot"] * len(PROMPTS))
    assert all(e.input_ids[e.start:] == [int(t) for t in g.tokens] for e, g in zip(examples, gens, strict=True))
    student = layer_subset_student(teacher.model, [0])
    pad = teacher.tokenizer.pad_token_id
    before = teacher_nll(student, examples, pad)
    settings = TrainSettings(epochs=6, batch_size=4, learning_rate=3e-3, max_length=64, seed=0)
    result = train_lm_student(student, examples, settings, {"token_kl": 1.0, "seq_kd": 0.5, "ref_ce": 0.1}, pad,
                              val_examples=examples[:4])
    after = teacher_nll(student, examples, pad)
    assert result.steps == 6 * 3
    assert after < before * 0.8, (before, after)
    assert np.isfinite(after)


def test_reference_examples_target_the_response_and_eos_only(teacher):
    tok = teacher.tokenizer
    rendered = render_prompts(teacher.tokenizer, ["hello my card was declined"])
    (ex,) = build_reference_examples(tok, rendered, ["thanks a lot"])
    prompt = tok(rendered[0], add_special_tokens=False)["input_ids"]
    assert ex.input_ids[:ex.start] == prompt
    assert ex.input_ids[ex.start:] == tok("thanks a lot", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    (cut,) = build_reference_examples(tok, rendered, [" ".join(["yes"] * 20)], max_length=8)
    assert len(cut.input_ids) == 8 and cut.start == 1  # the response is cut, one prompt token stays as context


def test_fine_tuning_on_references_lowers_their_nll(teacher):
    student = layer_subset_student(teacher.model, [0, 1])
    rendered = render_prompts(teacher.tokenizer, PROMPTS)
    examples = build_reference_examples(teacher.tokenizer, rendered, ["yes thanks a lot"] * len(PROMPTS))
    pad = teacher.tokenizer.pad_token_id
    before = teacher_nll(student, examples, pad)
    settings = TrainSettings(epochs=3, batch_size=4, learning_rate=1e-2, max_length=64, seed=0)
    result = finetune_on_references(student, examples, settings, pad, val_examples=examples[:4])
    assert len(result.history) == 3 and teacher_nll(student, examples, pad) < before * 0.7


def test_rouge_l_and_exact_match():
    from components.distillation.lm_measure import rouge_l, text_fidelity

    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b c d", "x y") == 0.0
    assert abs(rouge_l("the cat sat on the mat", "the cat on mat") - 2 * (4 / 6) * 1.0 / (4 / 6 + 1.0)) < 1e-9
    assert text_fidelity(["yes ", "no"], ["yes", "maybe"]) == {"rouge_l": 0.5, "exact_match": 0.5}


def test_forced_fidelity_of_the_teacher_itself_is_perfect(teacher):
    from components.distillation.lm_measure import forced_fidelity, generation_speed, greedy_answers

    d = Decoding(max_new_tokens=5)
    rendered, keys = teacher.generation_keys(PROMPTS[:4], "v", d, 38)
    gens = teacher.generate(rendered, keys, d, 38)
    examples = build_examples(teacher.tokenizer, rendered, gens)
    own = forced_fidelity(teacher.model, examples, teacher.tokenizer.pad_token_id)
    assert own["token_agreement"] == 1.0 and own["token_kl"] < 1e-3 and own["tokens"] == sum(len(g.tokens) for g in gens)
    stranger = narrow_student(teacher.model, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=1)
    other = forced_fidelity(stranger, examples, teacher.tokenizer.pad_token_id)
    assert other["token_kl"] > own["token_kl"] + 1e-3
    answers = greedy_answers(teacher.model, teacher.tokenizer, rendered, 5)
    assert answers == [teacher.tokenizer.decode(g.tokens.astype(int), skip_special_tokens=True) for g in gens]
    speed = generation_speed({"teacher": teacher.model, "student": layer_subset_student(teacher.model, [0])},
                             teacher.tokenizer, rendered, batch_size=2, new_tokens=4, repeats=1)
    assert set(speed) == {"teacher", "student"} and all(v["tokens_per_s"] > 0 and v["ttft_ms"] > 0
                                                         for v in speed.values())


def test_layers_for_budget_spreads_the_most_layers_that_fit(teacher):
    from components.distillation.lm_students import layers_for_budget

    total = parameter_count(teacher.model)
    for fraction in (0.5, 0.7, 1.0):
        layers = layers_for_budget(teacher.model, fraction)
        student = layer_subset_student(teacher.model, layers)
        assert parameter_count(student) <= fraction * total
        assert layers[0] == 0 and (len(layers) == 1 or layers[-1] == 3)
    assert layers_for_budget(teacher.model, 1.0) == [0, 1, 2, 3]
    with pytest.raises(ModelError, match="embeddings, norm and head alone"):
        layers_for_budget(teacher.model, 0.01)


def _generation(**keys):
    from components.common.config import config_from_dict

    return config_from_dict({"task": "generation", "generation": keys}).generation


def test_a_narrow_student_is_derived_from_the_teacher_unless_sized(teacher):
    from components.distillation.lm_students import build_lm_student, narrow_shape

    # the tiny teacher: hidden 32, feed-forward 64, 4 layers, 4 heads, 2 key-value heads
    assert narrow_shape(teacher.model.config, _generation(student_init="narrow")) == {
        "hidden_size": 16, "intermediate_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
    sized = _generation(student_init="narrow", student_hidden_size=24, student_intermediate_size=40,
                        student_num_layers=1, student_num_heads=3)
    assert narrow_shape(teacher.model.config, sized)["num_kv_heads"] == 3  # 2 does not divide 3: one per head
    student, tokenizer, init = build_lm_student(teacher.model, teacher.tokenizer, sized, seed=5)
    assert init == {"init": "narrow", "hidden_size": 24, "intermediate_size": 40, "num_layers": 1, "num_heads": 3,
                    "num_kv_heads": 3, "seed": 5}
    assert tokenizer is teacher.tokenizer and student.config.vocab_size == teacher.model.config.vocab_size
    assert student.config.head_dim == 8 and parameter_count(student) < parameter_count(teacher.model)
    again, _, _ = build_lm_student(teacher.model, teacher.tokenizer, sized, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters(), strict=True))


def test_impossible_narrow_shapes_are_errors_naming_the_key(teacher):
    from components.common.config import ConfigError
    from components.distillation.lm_students import build_lm_student

    with pytest.raises(ConfigError, match="generation.student_hidden_size: 20 is not a multiple of "
                                          "generation.student_num_heads 3"):
        _generation(student_init="narrow", student_hidden_size=20, student_num_heads=3)
    with pytest.raises(ConfigError, match="generation.student_init: expected 'layers' or 'narrow', got 'wide'"):
        _generation(student_init="wide")
    with pytest.raises(ConfigError, match="generation.student_hidden_size: apply to generation.student_init: narrow"):
        _generation(student_hidden_size=16)
    with pytest.raises(ConfigError, match="generation.student_init: narrow .* generation.student_model"):
        _generation(student_init="narrow", student_model="some/dir")
    with pytest.raises(ConfigError, match="generation.student_num_layers: must be >= 0"):
        _generation(student_init="narrow", student_num_layers=-1)
    with pytest.raises(ConfigError, match="generation.lora_r: LoRA adapts a pretrained student"):
        _generation(student_init="narrow", lora_r=4)
    # derived from the teacher (4 heads), a width of 18 does not split: named before any model is built
    with pytest.raises(ModelError, match=r"generation.student_hidden_size: 18 is not a multiple of "
                                         r"generation.student_num_heads 4 \(the teacher's head count"):
        build_lm_student(teacher.model, teacher.tokenizer, _generation(student_init="narrow", student_hidden_size=18))
    # head size 3: the rotary embeddings cannot run it; the forward-pass check says so
    with pytest.raises(ModelError, match="generation.student_hidden_size / student_num_heads: .*head size 3"):
        build_lm_student(teacher.model, teacher.tokenizer, _generation(student_init="narrow", student_hidden_size=12))


def test_a_lora_student_trains_only_its_adapters_and_merges_into_a_plain_model(teacher):
    pytest.importorskip("peft")
    from components.distillation.lm_students import build_lm_student, merged

    student, _, init = build_lm_student(teacher.model, teacher.tokenizer, _generation(student_layers=[0, 3], lora_r=2,
                                                                                     lora_alpha=4))
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert init["lora"] == {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"], "merged": True,
                            "trainable_parameters": sum(p.numel() for p in student.parameters() if p.requires_grad)}
    base = {n: p.detach().clone() for n, p in student.named_parameters() if "lora_" not in n}
    d = Decoding(max_new_tokens=4)
    rendered, keys = teacher.generation_keys(PROMPTS[:8], "v", d, 8)
    examples = build_examples(teacher.tokenizer, rendered, teacher.generate(rendered, keys, d, 8))
    train_lm_student(student, examples, TrainSettings(epochs=1, batch_size=4, learning_rate=1e-2, max_length=64),
                     {"token_kl": 1.0}, teacher.tokenizer.pad_token_id)
    assert all(torch.equal(p, base[n]) for n, p in student.named_parameters() if "lora_" not in n)
    ids = torch.tensor([[2, 6, 7, 8]])
    student.eval()
    with torch.no_grad():
        adapted = student(input_ids=ids).logits
    plain = merged(student)
    assert type(plain).__name__ == "LlamaForCausalLM" and not any("lora_" in n for n, _ in plain.named_parameters())
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, adapted, atol=1e-5)
    state = plain.state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(state[q], base[f"base_model.model.{q}".replace("q_proj.weight", "q_proj.base_layer.weight")])
    assert torch.equal(state["model.layers.1.mlp.down_proj.weight"],
                       base["base_model.model.model.layers.1.mlp.down_proj.weight"])
