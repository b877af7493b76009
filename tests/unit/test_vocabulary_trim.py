"""Vocabulary trimming keeps what the texts use and changes nothing they see; feed-forward pruning keeps
the strongest neurons; augmentation is seeded."""

import pytest
import torch

from components.common.modeling import ModelError, fitted_max_length, load_classifier, predict_logits
from components.distillation.measure import count_parameters
from components.distillation.students import (
    MIN_EMBEDDING_RANK,
    embedding_rank_for_budget,
    factorize_embeddings,
    prune_intermediate,
    trim_vocabulary,
    trim_vocabulary_to_budget,
    vocabulary_for_budget,
)
from components.distillation.transfer import augment_texts
from tests.fakes import make_rows, make_tiny_teacher


@pytest.fixture()
def model_and_texts(tmp_path):
    model, tokenizer = load_classifier(make_tiny_teacher(tmp_path / "t"))
    texts = [r["text"] for r in make_rows(40)]
    return model, tokenizer, texts


def test_full_trim_gives_the_same_logits_with_fewer_rows(model_and_texts, tmp_path):
    model, tokenizer, texts = model_and_texts
    student, s_tok = trim_vocabulary(model, tokenizer, texts, max_positions=32)
    student.eval()
    assert student.config.vocab_size < model.config.vocab_size
    assert student.config.max_position_embeddings == 32
    with torch.inference_mode():
        a = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        b = student(**s_tok(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(a, b)
    student.save_pretrained(tmp_path / "s")
    s_tok.save_pretrained(tmp_path / "s")
    again, again_tok = load_classifier(tmp_path / "s")
    assert again_tok.get_vocab() == s_tok.get_vocab()
    with torch.inference_mode():
        torch.testing.assert_close(again(**again_tok(texts, padding=True, return_tensors="pt")).logits, b)


def test_a_student_trimmed_to_8_positions_reads_texts_at_a_larger_configured_max_length(model_and_texts):
    """A champion trained at distill.max_length 8, monitored or served under a config saying 64."""
    model, tokenizer, texts = model_and_texts
    student, s_tok = trim_vocabulary(model, tokenizer, texts, max_positions=8)
    long = [" ".join(texts[:6])]  # far more than 8 tokens
    assert len(s_tok(long[0])["input_ids"]) > 8
    assert fitted_max_length(student, 64) == 8 and fitted_max_length(model, 64) == 64
    np_logits = predict_logits(student, s_tok, long, 64)  # truncated at the position table, no IndexError
    assert np_logits.shape == (1, student.config.num_labels)
    assert (predict_logits(student, s_tok, long, 8) == np_logits).all()


def test_max_size_and_budget(model_and_texts):
    model, tokenizer, texts = model_and_texts
    budget = count_parameters(model) - 10 * model.config.hidden_size
    size = vocabulary_for_budget(model, budget)
    assert size == model.config.vocab_size - 10
    student, s_tok = trim_vocabulary(model, tokenizer, texts, max_size=12)
    assert student.config.vocab_size == len(s_tok.get_vocab()) == 12
    assert all(t in s_tok.get_vocab() for t in tokenizer.all_special_tokens)
    used, _ = trim_vocabulary(model, tokenizer, texts)
    budget = count_parameters(used) - 3 * model.config.hidden_size
    fitted, f_tok = trim_vocabulary_to_budget(model, tokenizer, texts, max_parameters=budget)
    assert count_parameters(fitted) <= budget and fitted.config.vocab_size == used.config.vocab_size - 3
    assert trim_vocabulary_to_budget(model, tokenizer, texts)[0].config.vocab_size == used.config.vocab_size
    with pytest.raises(ModelError, match="max_size 3"):
        trim_vocabulary(model, tokenizer, texts, max_size=3)
    with pytest.raises(ModelError, match="max_positions 999"):
        trim_vocabulary(model, tokenizer, texts, max_positions=999)


def test_factored_embeddings_at_full_rank_compute_what_the_bert_model_did(model_and_texts, tmp_path):
    """Every layer, the pooler and the head map onto the ALBERT model unchanged: at rank = hidden size
    with an identity projection the logits are the same, and they survive save/load (Auto classes)
    and int8 quantization like any student's."""
    from components.distillation.quantize import load_int8_classifier, save_int8_classifier

    model, tokenizer, texts = model_and_texts
    student, s_tok = trim_vocabulary(model, tokenizer, texts, max_positions=32)
    albert = factorize_embeddings(student, s_tok, texts, student.config.hidden_size).eval()
    assert albert.config.model_type == "albert" and albert.config.embedding_size == student.config.hidden_size
    assert albert.config.id2label == student.config.id2label
    enc = s_tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = student.eval()(**enc).logits
        torch.testing.assert_close(albert(**enc).logits, expected)
    albert.save_pretrained(tmp_path / "a")
    s_tok.save_pretrained(tmp_path / "a")
    again, again_tok = load_classifier(tmp_path / "a")
    assert type(again).__name__ == "AlbertForSequenceClassification" and again_tok.get_vocab() == s_tok.get_vocab()
    with torch.inference_mode():
        torch.testing.assert_close(again(**again_tok(texts, padding=True, return_tensors="pt")).logits, expected)
    int8, _ = load_int8_classifier(save_int8_classifier(tmp_path / "a", tmp_path / "a8"))
    with torch.inference_mode():
        assert (int8(**enc).logits.argmax(-1) == expected.argmax(-1)).float().mean() > 0.8


def test_a_factored_student_keeps_every_piece_within_the_budget(tmp_path):
    model, tokenizer = load_classifier(make_tiny_teacher(tmp_path / "t", hidden=64))
    texts = [r["text"] for r in make_rows(40)]
    used, u_tok = trim_vocabulary(model, tokenizer, texts, max_positions=32)
    rows = used.config.vocab_size + 32 + used.config.type_vocab_size
    rest = count_parameters(used) - rows * 64 - 2 * 64
    budget = rest + 64 + MIN_EMBEDDING_RANK * (rows + 2 + 64) + 7  # rank 32 fits; 40 would not
    assert embedding_rank_for_budget(used, budget) == MIN_EMBEDDING_RANK
    assert count_parameters(used) > budget
    factored, f_tok = trim_vocabulary_to_budget(model, tokenizer, texts, max_positions=32, max_parameters=budget,
                                                factorize=True)
    assert factored.config.model_type == "albert" and factored.config.embedding_size == MIN_EMBEDDING_RANK
    assert factored.config.vocab_size == used.config.vocab_size and f_tok.get_vocab() == u_tok.get_vocab()
    assert count_parameters(factored) <= budget
    # the fitted projection stays small (a LayerNorm's outputs sum to zero: plain least squares on them
    # is singular and gave weights near 1e6, which the student could not train away)
    assert factored.albert.encoder.embedding_hidden_mapping_in.weight.abs().max() < 10
    # below the smallest rank worth keeping, pieces are dropped at full width instead
    small = rest + 64 + (MIN_EMBEDDING_RANK - 8) * (rows + 2 + 64)
    dropped, d_tok = trim_vocabulary_to_budget(model, tokenizer, texts, max_positions=32, max_parameters=small,
                                               factorize=True)
    assert dropped.config.model_type == "bert" and dropped.config.vocab_size < used.config.vocab_size
    assert count_parameters(dropped) <= small
    # a budget the full-width table already fits is left alone
    assert trim_vocabulary_to_budget(model, tokenizer, texts, max_positions=32, max_parameters=count_parameters(used),
                                     factorize=True)[0].config.model_type == "bert"
    with pytest.raises(ModelError, match="rank 65 outside 1..64"):
        factorize_embeddings(used, u_tok, texts, 65)
    with pytest.raises(ModelError, match="supported for BERT models, got albert"):
        factorize_embeddings(factored, f_tok, texts, 16)


def test_prune_intermediate_keeps_the_strongest_neurons(model_and_texts, tmp_path):
    model, tokenizer, texts = model_and_texts
    model.eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    full = model.config.intermediate_size
    same = prune_intermediate(model, full).eval()
    with torch.inference_mode():
        torch.testing.assert_close(same(**enc).logits, model(**enc).logits)
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():  # make neuron 3 the weakest by far, so it must be the one dropped
        layer.intermediate.dense.weight[3] *= 1e-4
    pruned = prune_intermediate(model, full - 1).eval()
    assert pruned.config.intermediate_size == full - 1
    assert count_parameters(pruned) == count_parameters(model) - model.config.num_hidden_layers * (
        2 * model.config.hidden_size + 1)
    kept = pruned.bert.encoder.layer[0].intermediate.dense.weight
    torch.testing.assert_close(kept[:3], layer.intermediate.dense.weight[:3])
    torch.testing.assert_close(kept[3:], layer.intermediate.dense.weight[4:])
    pruned.save_pretrained(tmp_path / "p")
    again = load_classifier(tmp_path / "p")[0]
    with torch.inference_mode():
        torch.testing.assert_close(again(**enc).logits, pruned(**enc).logits)
    with pytest.raises(ModelError, match=f"intermediate_size {full + 1}"):
        prune_intermediate(model, full + 1)


def test_augment_is_seeded_and_sized():
    texts = ["what is the capital of france ?", "how many legs does a spider have ?", "hi"]
    a = augment_texts(texts, copies=3, seed=1)
    assert a == augment_texts(texts, copies=3, seed=1)
    assert a != augment_texts(texts, copies=3, seed=2)
    assert len(a) == 9 and all(a)
    assert augment_texts(texts, copies=0) == []
    with pytest.raises(ValueError, match="copies"):
        augment_texts(texts, copies=-1)


def test_augmentation_copies_chosen_from_the_data():
    from components.common.config import ConfigError, DistillConfig, config_from_dict
    from components.distillation.transfer import AUTO, resolve_copies

    assert DistillConfig().augment_copies == AUTO and DistillConfig().augment_target_rows == 20000
    # trec's 4,134 training rows (hash split) get the most copies, banking77's 9,100 two, ag_news's 14,000 one
    assert [resolve_copies(AUTO, n, 20000) for n in (560, 4134, 9100, 14000, 20000, 50000)] == [4, 4, 2, 1, 0, 0]
    assert resolve_copies(AUTO, 0, 20000) == 0
    assert resolve_copies(3, 50000, 20000) == 3 and resolve_copies(0, 10, 20000) == 0  # a set value is kept
    with pytest.raises(ConfigError, match="distill.augment_copies: must be >= 0, or -1"):
        config_from_dict({"distill": {"augment_copies": -2}})
    with pytest.raises(ConfigError, match="distill.augment_target_rows: must be >= 1"):
        config_from_dict({"distill": {"augment_target_rows": 0}})
