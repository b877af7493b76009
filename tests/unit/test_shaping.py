"""Shaping a student to a budget: candidates most capable first, the first that fits both budgets
wins, and an impossible budget is an error that names every candidate's figures."""

import pytest
from fakes import make_rows, make_tiny_teacher

from components.common.modeling import ModelError, load_classifier
from components.distillation.measure import count_parameters
from components.distillation.shaping import Shape, build_shaped, candidate_shapes, choose_shape


def test_candidates_are_most_capable_first():
    labels = [s.label() for s in candidate_shapes(6, 1536)]
    assert labels[:6] == ["layers [0, 3, 5], feed-forward 1536", "layers [0, 3, 5], feed-forward 768",
                          "layers [0, 5], feed-forward 1536", "layers [0, 3, 5], feed-forward 384",
                          "layers [0, 3, 5], feed-forward 192", "layers [0, 5], feed-forward 768"]  # depth first
    assert labels[-1] == "layers [5], feed-forward 384"
    assert len(set(labels)) == len(labels)


def fake_measure(costs):
    """Throughput inversely proportional to a cost per model name (teacher cost 1.0): deterministic."""
    def measure(models, texts, latency_samples, throughput_batches):
        measure.calls += 1
        return {name: {"throughput_rows_per_s": 100.0 / costs(name), "latency_p50_ms": 1.0} for name in models}
    measure.calls = 0
    return measure


def cost(name):
    if name == "teacher":
        return 1.0
    layers = name.split("]")[0].count(",") + 1
    width = int(name.rsplit(" ", 1)[-1])
    return layers / 4 * (0.5 + 0.5 * width / 64)  # the tiny teacher: 4 layers, feed-forward 64


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_classifier(tiny_teacher)


def test_the_most_capable_shape_within_both_budgets_wins(teacher):
    model, tok = teacher
    texts = [r["text"] for r in make_rows(60)]
    measure = fake_measure(cost)
    choice = choose_shape(model, tok, texts, texts[:8], 32, max_fraction=0.9, min_speedup=3.0, measure=measure)
    assert measure.calls == 1  # every candidate timed side by side with the teacher, once
    # 3 layers cost >= 0.469 (2.1x at most); 2 layers at a quarter width: 0.5 * 0.625 = 0.3125 -> 3.2x < 3.3x
    assert choice.shape == Shape((3,), 32) and choice.speedup >= 3.0 * 1.1
    assert choice.parameter_fraction <= 0.9 and "most capable" in choice.reason
    student, s_tok = build_shaped(model, tok, choice.shape, texts, 32, int(0.9 * count_parameters(model)))
    assert count_parameters(student) == choice.parameters


def test_no_speed_budget_times_nothing_and_keeps_the_widest_fit(teacher):
    model, tok = teacher
    texts = [r["text"] for r in make_rows(60)]
    measure = fake_measure(cost)
    choice = choose_shape(model, tok, texts, texts[:8], 32, max_fraction=0.9, min_speedup=0.0, measure=measure)
    assert measure.calls == 0
    first_fit = next(r["shape"] for r in choice.candidates if r["fits_parameters"])
    assert choice.shape.label() == first_fit and choice.parameter_fraction <= 0.9


def test_a_factorizing_budget_keeps_every_piece_of_the_chosen_shape(tmp_path):
    """student.factorize_embeddings reaches the probe: the shape chosen under a budget too small for its
    full-width vocabulary keeps every piece in factored (ALBERT) embeddings, and build_shaped, which the
    student step calls next, builds the same student."""
    from components.distillation.students import MIN_EMBEDDING_RANK

    model, tok = load_classifier(make_tiny_teacher(tmp_path / "t", hidden=64))
    texts = [r["text"] for r in make_rows(60)]
    first = candidate_shapes(model.config.num_hidden_layers, model.config.intermediate_size)[0]
    used, _ = build_shaped(model, tok, first, texts, 32, 0)
    rows = used.config.vocab_size + 32 + used.config.type_vocab_size
    budget = count_parameters(used) - rows * 64 - 2 * 64 + 64 + MIN_EMBEDDING_RANK * (rows + 2 + 64)
    fraction = (budget + 0.5) / count_parameters(model)
    plain = choose_shape(model, tok, texts, texts[:8], 32, max_fraction=fraction, min_speedup=0.0)
    factored = choose_shape(model, tok, texts, texts[:8], 32, max_fraction=fraction, min_speedup=0.0, factorize=True)
    assert plain.shape == factored.shape == first
    assert plain.vocab_size < used.config.vocab_size == factored.vocab_size
    assert f"embeddings factored at rank {MIN_EMBEDDING_RANK}" in factored.reason and "factored" not in plain.reason
    assert factored.candidates[0]["embedding_rank"] == MIN_EMBEDDING_RANK
    student, _ = build_shaped(model, tok, first, texts, 32, int(fraction * count_parameters(model)), factorize=True)
    assert student.config.model_type == "albert" and count_parameters(student) == factored.parameters <= budget


def test_an_impossible_budget_is_a_clear_error(teacher):
    model, tok = teacher
    texts = [r["text"] for r in make_rows(60)]
    with pytest.raises(ModelError, match=r"no student shape meets the budget student.max_parameter_fraction=0.9 "
                                         r"and student.min_speedup=50.*layers \[0, 2, 3\], feed-forward 64"):
        choose_shape(model, tok, texts, texts[:8], 32, max_fraction=0.9, min_speedup=50.0, measure=fake_measure(cost))
    with pytest.raises(ModelError, match="no student shape meets"):
        choose_shape(model, tok, texts, texts[:8], 32, max_fraction=0.01, min_speedup=0.0)


def test_the_smaller_of_wall_and_cpu_ratio_decides(teacher):
    """Under load the wall-clock ratio can overstate a small model; a CPU-time ratio below the
    budget keeps a candidate out even when the wall clock says it is fast enough."""
    model, tok = teacher
    texts = [r["text"] for r in make_rows(60)]

    def measure(models, texts, latency_samples, throughput_batches):
        out = {}
        for name in models:
            c = cost(name)
            wall = 100.0 / (c if name == "teacher" else c / 2)  # the wall clock flatters every student 2x
            out[name] = {"throughput_rows_per_s": wall, "throughput_cpu_rows_per_s": 100.0 / c,
                         "latency_p50_ms": 1.0}
        return out

    choice = choose_shape(model, tok, texts, texts[:8], 32, max_fraction=0.9, min_speedup=3.0, measure=measure)
    assert choice.shape == Shape((3,), 32)  # the same choice as from honest wall-clock figures
    row = next(r for r in choice.candidates if r["shape"] == choice.shape.label())
    assert row["speedup"] == row["speedup_cpu"] < row["speedup_wall"]
    assert choice.load_average is None or choice.load_average >= 0
    again = type(choice).from_dict(choice.to_dict())
    assert again.load_average == choice.load_average and again.shape == choice.shape


def test_the_probe_times_held_out_texts_when_there_are_enough():
    from components.train_student.runner import probe_texts

    train, held_out = [f"train {i}" for i in range(100)], [f"held out {i}" for i in range(40)]
    texts, what = probe_texts(train, held_out)
    assert texts == held_out and what == "40 held-out validation texts"
    texts, what = probe_texts(train, held_out[:31])  # fewer than a timed batch of 32
    assert texts == train and what.startswith("100 training texts (only 31 validation rows;")


def test_a_trimmed_vocabulary_splits_unseen_words_into_more_pieces():
    """Why the probe times held-out texts: a student is faster on the texts its vocabulary was trimmed to."""
    import string

    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from components.distillation.students import trim_vocabulary

    letters = list(string.ascii_lowercase)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "where", "is", "the", "bank", "photosynthesis",
             *letters, *(f"##{c}" for c in letters)]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    model = BertForSequenceClassification(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=1, intermediate_size=8, num_labels=2))
    seen = ["where is the bank", " ".join(letters), "".join(letters)]  # every letter piece, first and inside a word
    _, s_tok = trim_vocabulary(model, tok, seen)
    assert s_tok(seen[0])["input_ids"] == [s_tok.vocab[w] for w in ("[CLS]", "where", "is", "the", "bank", "[SEP]")]
    assert len(tok("photosynthesis")["input_ids"]) == 3 and len(s_tok("photosynthesis")["input_ids"]) == 16


def test_probe_shape_times_the_held_out_texts_and_says_so(teacher, home, monkeypatch):
    from components.common.config import StudentConfig
    from components.common.home import Home
    from components.train_student import runner

    model, tok = teacher
    seen = []

    def spy(teacher_model, tokenizer, texts, timed, *args, **kwargs):
        seen.append(list(timed))
        return choose_shape(teacher_model, tokenizer, texts, timed, *args, measure=fake_measure(cost))

    monkeypatch.setattr(runner, "choose_shape", spy)
    h = Home.resolve(str(home)).ensure()
    train = [r["text"] for r in make_rows(60)]
    held_out = [f"a question nobody trained on, number {i}" for i in range(40)]
    cfg = StudentConfig(max_parameter_fraction=0.9, min_speedup=3.0)
    choice = runner.probe_shape(h, "t1", "d1", model, tok, train, cfg, 32, held_out)
    assert seen == [held_out] and choice.reason.endswith("; timed on 40 held-out validation texts")
    runner.probe_shape(h, "t1", "d1", model, tok, train, cfg, 32, held_out)  # cached: not timed again
    few = runner.probe_shape(h, "t1", "d1", model, tok, train, cfg, 32, held_out[:5])  # another cache entry
    assert len(seen) == 2 and seen[1] == train and "60 training texts (only 5 validation rows" in few.reason
