"""Generations of a causal-LM teacher with per-token top-k log-probs: determinism, keys, the store's
ragged shards, and the cached fill (reruns make zero teacher calls; appended prompts only themselves)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from components.common.generation import (
    Decoding,
    Generation,
    GenerationError,
    check_vocabulary,
    generation_key,
    tokenizer_digest,
)
from components.common.teacher_store import GENERATION, TeacherOutputStore
from components.common.teachers import adapter_kind, load_teacher
from tests.tiny_lm import make_tiny_llama

PROMPTS = ["hello my card was declined", "where is my order", "reset password please", "refund",
           "what can you do for me today", "the account is locked help"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("lm") / "teacher")


@pytest.fixture(scope="module")
def teacher(tiny_lm):
    return load_teacher(tiny_lm)


def _gen(teacher, prompts, decoding=None, k=4, batch_size=4):
    decoding = decoding or Decoding(max_new_tokens=6)
    rendered, keys = teacher.generation_keys(prompts, "v1", decoding, k)
    return keys, teacher.generate(rendered, keys, decoding, k, batch_size)


def test_causal_lm_adapter_is_chosen_by_architecture(tiny_lm, teacher):
    assert adapter_kind(tiny_lm) == "causal_lm"
    assert teacher.produces == frozenset({"generation"})
    assert teacher.tokenizer_id == tokenizer_digest(tiny_lm)


def test_greedy_generations_have_topk_and_tail(teacher):
    _, rows = _gen(teacher, PROMPTS)
    for g in rows:
        assert g.tokens.dtype == np.uint16 and g.topk_ids.dtype == np.uint16
        assert g.topk_logprobs.dtype == np.float16 and g.topk_logprobs.shape == (len(g.tokens), 4)
        assert 1 <= len(g.tokens) <= 6
        # greedy: the chosen token is the most likely one, and top-k is sorted
        assert (g.topk_ids[:, 0] == g.tokens).all()
        assert (np.diff(g.topk_logprobs.astype(np.float32), axis=1) <= 1e-3).all()
        mass = np.exp(g.topk_logprobs.astype(np.float64)).sum(axis=1) + g.tail
        assert np.allclose(mass, 1.0, atol=1e-2)


def test_batched_greedy_matches_one_at_a_time(teacher):
    _, batched = _gen(teacher, PROMPTS, batch_size=4)
    for prompt, row in zip(PROMPTS, batched, strict=True):
        _, (single,) = _gen(teacher, [prompt], batch_size=1)
        assert single.tokens.tolist() == row.tokens.tolist()
        assert np.allclose(single.topk_logprobs.astype(np.float32), row.topk_logprobs.astype(np.float32), atol=2e-2)


def test_sampled_rows_do_not_depend_on_their_neighbours(teacher):
    d = Decoding(max_new_tokens=6, temperature=1.0, seed=3)
    _, alone = _gen(teacher, PROMPTS[:1], d)
    _, together = _gen(teacher, list(reversed(PROMPTS)), d)
    assert alone[0].tokens.tolist() == together[-1].tokens.tolist()
    _, again = _gen(teacher, list(reversed(PROMPTS)), d)
    assert [g.tokens.tolist() for g in again] == [g.tokens.tolist() for g in together]


def test_keys_cover_what_changes_a_generation():
    base = generation_key("v1", "tok", "prompt", Decoding(), 8)
    assert generation_key("v1", "tok", "prompt", Decoding(), 8) == base
    # greedy ignores sampling parameters
    assert generation_key("v1", "tok", "prompt", Decoding(top_p=0.5, seed=9), 8) == base
    for other in (generation_key("v2", "tok", "prompt", Decoding(), 8),
                  generation_key("v1", "tok2", "prompt", Decoding(), 8),
                  generation_key("v1", "tok", "prompt ", Decoding(), 8),
                  generation_key("v1", "tok", "prompt", Decoding(max_new_tokens=65), 8),
                  generation_key("v1", "tok", "prompt", Decoding(temperature=0.7), 8),
                  generation_key("v1", "tok", "prompt", Decoding(), 32)):
        assert other != base
    assert (generation_key("v1", "tok", "p", Decoding(temperature=0.7, seed=1), 8)
            != generation_key("v1", "tok", "p", Decoding(temperature=0.7, seed=2), 8))


def test_chat_template_is_part_of_the_tokenizer_identity(tmp_path, tiny_lm):
    import shutil

    copy = Path(shutil.copytree(tiny_lm, tmp_path / "copy"))
    assert tokenizer_digest(copy) == tokenizer_digest(tiny_lm)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    if "chat_template" in cfg:
        cfg["chat_template"] += " "
        (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    else:
        (copy / "chat_template.jinja").write_text((copy / "chat_template.jinja").read_text() + " ")
    assert tokenizer_digest(copy) != tokenizer_digest(tiny_lm)


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_p=1.5)])
def test_bad_decoding_is_refused(bad):
    with pytest.raises(GenerationError, match=next(iter(bad))):
        Decoding(**bad)


def test_vocabularies_beyond_uint16_and_bad_k_are_refused():
    with pytest.raises(GenerationError, match="uint16"):
        check_vocabulary(SimpleNamespace(config=SimpleNamespace(vocab_size=70000)), 8)
    with pytest.raises(GenerationError, match="k=0"):
        check_vocabulary(SimpleNamespace(config=SimpleNamespace(vocab_size=100)), 0)


def _row(t: int, k: int = 3, seed: int = 0) -> Generation:
    rng = np.random.default_rng(seed)
    lp = -np.sort(rng.random((t, k)), axis=1)
    return Generation(rng.integers(0, 60000, t).astype(np.uint16), lp.astype(np.float16),
                      rng.integers(0, 60000, (t, k)).astype(np.uint16), rng.random(t).astype(np.float32))


def test_store_round_trips_ragged_generations(tmp_path):
    store = TeacherOutputStore(tmp_path / "store")
    keys = [bytes([i]) * 32 for i in range(4)]
    rows = [_row(5, seed=0), _row(0, seed=1), _row(1, seed=2), _row(7, seed=3)]
    store.put_generations(keys, rows)
    got = store.get_generations(keys)
    assert set(got) == set(keys)
    for k, r in zip(keys, rows, strict=True):
        for name in ("tokens", "topk_logprobs", "topk_ids", "tail"):
            assert np.array_equal(getattr(got[k], name), getattr(r, name)), name
    assert store.get_many(keys) == {} and store.get_topk_many(keys) == {}  # formats never mix


def test_a_shard_whose_lengths_disagree_with_its_tokens_is_quarantined(tmp_path):
    store = TeacherOutputStore(tmp_path / "store")
    keys = [b"a" * 32, b"b" * 32]
    r = [_row(2), _row(3)]
    store._put(keys, {"lengths": np.array([2, 4], dtype=np.int32),
                      "tokens": np.concatenate([r[0].tokens, r[1].tokens]),
                      "topk_logprobs": np.concatenate([r[0].topk_logprobs, r[1].topk_logprobs]),
                      "topk_ids": np.concatenate([r[0].topk_ids, r[1].topk_ids]),
                      "tail": np.concatenate([r[0].tail, r[1].tail])}, GENERATION)
    assert store.get_generations(keys) == {}
    assert "expected uint16 with 6 token rows" in str(store.last_problems[0])


def test_cached_fill_generates_only_what_the_store_lacks(tmp_path, teacher):
    from components.common.teacher_generations import GenerationFiller

    store = TeacherOutputStore(tmp_path / "store")
    d = Decoding(max_new_tokens=5)
    first = GenerationFiller(store, teacher, "v1", d, k=4, batch_size=4, flush_rows=2)
    keys, rows = first.outputs(PROMPTS[:4])
    assert (first.computed, first.from_store) == (4, 0) and len(store.records()) == 2  # flushed every 2 prompts

    again = GenerationFiller(store, teacher, "v1", d, k=4)
    keys2, rows2 = again.outputs(PROMPTS[:4])
    assert (again.computed, again.from_store) == (0, 4) and keys2 == keys
    assert [g.tokens.tolist() for g in rows2] == [g.tokens.tolist() for g in rows]

    appended = GenerationFiller(store, teacher, "v1", d, k=4)
    appended.outputs(PROMPTS)
    assert (appended.computed, appended.from_store) == (2, 4)

    longer = GenerationFiller(store, teacher, "v1", Decoding(max_new_tokens=7), k=4)
    longer.outputs(PROMPTS[:2])
    assert longer.computed == 2  # new decoding parameters regenerate


def test_a_classifier_teacher_cannot_fill_generations(tmp_path, tiny_teacher):
    from components.common.modeling import ModelError
    from components.common.teacher_generations import GenerationFiller

    with pytest.raises(ModelError, match="causal-LM teacher"):
        GenerationFiller(TeacherOutputStore(tmp_path / "s"), load_teacher(tiny_teacher), "v", Decoding(), 4)


def test_fidelity_check_catches_generations_of_another_teacher(tmp_path, teacher, tiny_lm):
    from components.cache_teacher_outputs.runner import CacheFidelityError, check_generation_fidelity
    from components.common.teacher_generations import GenerationFiller

    store = TeacherOutputStore(tmp_path / "store")
    d = Decoding(max_new_tokens=5)
    GenerationFiller(store, teacher, "v1", d, k=4).outputs(PROMPTS)
    assert check_generation_fidelity(GenerationFiller(store, teacher, "v1", d, k=4), PROMPTS, sample=3) == 3
    # the same version label, other weights: what a stale or tampered cache looks like
    impostor = load_teacher(make_tiny_llama(tmp_path / "other", seed=5))
    with pytest.raises(CacheFidelityError, match=r"sampled cached generations differ"):
        check_generation_fidelity(GenerationFiller(store, impostor, "v1", d, k=4), PROMPTS, sample=3)
