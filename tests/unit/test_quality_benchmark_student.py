"""benchmarks.quality builds its student as the pipeline does: every training piece kept in factored
embeddings when the full-width table would not fit (--factorize-embeddings, on by default), or the rarest
pieces dropped (--no-factorize-embeddings, the runs before 2026-12-04)."""

import argparse

from fakes import factorizing_fraction, make_rows, make_tiny_teacher

from benchmarks.quality import make_student
from components.common.modeling import load_classifier
from components.distillation.measure import count_parameters


def test_the_quality_benchmark_factors_embeddings_unless_told_not_to(tmp_path):
    path = make_tiny_teacher(tmp_path / "t", hidden=64)
    teacher, tokenizer = load_classifier(path)
    texts = [r["text"] for r in make_rows(40)]
    fraction = factorizing_fraction(path, texts, [0, 3], 24)
    built = {}
    for factorize in (True, False):
        args = argparse.Namespace(student_from_layers="0,3", prune_intermediate=0, trim_vocab=True, max_length=24,
                                  param_budget=fraction, factorize_embeddings=factorize)
        built[factorize] = make_student(teacher, tokenizer, texts, args, {})
    (factored, f_tok), (dropped, d_tok) = built[True], built[False]
    assert factored.config.model_type == "albert" and dropped.config.model_type == "bert"
    assert len(f_tok.get_vocab()) > len(d_tok.get_vocab())  # every piece kept against the rarest dropped
    for model in (factored, dropped):
        assert count_parameters(model) <= int(fraction * count_parameters(teacher))
