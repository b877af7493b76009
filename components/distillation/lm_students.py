"""Generative students: a subset of a causal-LM teacher's layers, a narrower config of the same
architecture, or any causal LM that shares the teacher's tokenizer (anything else is an error
before training: the cached top-k token ids would mean other tokens)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from components.common.modeling import ModelError


def layer_subset_student(teacher, layers: Sequence[int]):
    """A student of the teacher's class with the teacher's embeddings, final norm, LM head and the
    decoder layers `layers` (in that order), copied: DistilBERT-style initialisation for a decoder."""
    n = int(teacher.config.num_hidden_layers)
    layers = list(layers)
    if not layers:
        raise ModelError("student layers: at least one teacher layer is needed")
    bad = [x for x in layers if not 0 <= x < n]
    if bad:
        raise ModelError(f"student layers: teacher layer {bad[0]} out of range; the teacher has {n} decoder layers "
                         f"(valid: 0..{n - 1})")
    if len(set(layers)) != len(layers):
        raise ModelError(f"student layers: {layers} repeats a layer")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [teacher.config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    state = {}
    prefix = "model.layers."
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) in layers:
                state[f"{prefix}{layers.index(int(index))}.{rest}"] = value.clone()
        else:
            state[key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"layer-subset student: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student


def narrow_student(teacher, hidden_size: int, intermediate_size: int, num_layers: int, num_heads: int,
                   num_kv_heads: int | None = None, seed: int = 0):
    """A randomly initialised student of the teacher's architecture and vocabulary, narrower."""
    if hidden_size % num_heads:
        raise ModelError(f"narrow student: hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    config = copy.deepcopy(teacher.config)
    config.hidden_size, config.intermediate_size = hidden_size, intermediate_size
    config.num_hidden_layers, config.num_attention_heads = num_layers, num_heads
    config.num_key_value_heads = num_kv_heads or num_heads
    if hasattr(config, "head_dim"):
        config.head_dim = hidden_size // num_heads
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:1] * num_layers
    torch.manual_seed(seed)
    student = type(teacher)(config)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student


def check_same_vocabulary(teacher_tokenizer, student_tokenizer, where: str = "student") -> None:
    """Refuse a student whose tokenizer maps tokens to other ids than the teacher's."""
    t, s = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if t != s:
        differ = sorted(set(t.items()) ^ set(s.items()), key=lambda kv: kv[1])[:3]
        raise ModelError(f"{where}: its tokenizer differs from the teacher's ({len(s)} vs {len(t)} tokens; e.g. "
                         f"{differ}); cached teacher top-k token ids would mean other tokens. Use a student with "
                         f"the teacher's tokenizer.")


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def layers_for_budget(teacher, max_parameter_fraction: float) -> list[int]:
    """The most teacher layers a layer-subset student can keep within `max_parameter_fraction` of the
    teacher's parameters (embeddings, norm and head are kept whole), spread evenly from the first
    layer to the last. An impossible budget (not even one layer fits) is an error naming the sizes."""
    total = parameter_count(teacher)
    layers = teacher.model.layers
    per_layer = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    fixed = total - sum(per_layer)
    budget = max_parameter_fraction * total
    n = 0
    while n < len(per_layer) and fixed + sum(sorted(per_layer)[:n + 1]) <= budget:
        n += 1
    if n == 0:
        raise ModelError(f"student.max_parameter_fraction={max_parameter_fraction}: the teacher's embeddings, norm "
                         f"and head alone are {fixed / total:.3f} of its {total:,} parameters; one layer more is "
                         f"{(fixed + min(per_layer)) / total:.3f}. Raise the fraction or use a narrow student.")
    if n == 1:
        return [0]
    last = len(per_layer) - 1
    return sorted({round(i * last / (n - 1)) for i in range(n)})


def build_lm_student(teacher, teacher_tokenizer, g) -> tuple[object, object, dict]:
    """The generative student a GenerationConfig (config.generation) asks for, with its tokenizer and
    a description for the lineage: `student_model` (any causal LM with the teacher's tokenizer; a
    different tokenizer is a ModelError here, before any training), else the teacher's decoder layers
    `student_layers` (empty: as many as fit in `student_max_parameter_fraction`, layers_for_budget)."""
    if g.student_model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        where = f"generation.student_model {g.student_model}"
        try:
            tokenizer = AutoTokenizer.from_pretrained(g.student_model, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{where}: no loadable tokenizer ({exc}); expected a causal-LM directory saved with "
                             f"save_pretrained and the teacher's tokenizer") from None
        check_same_vocabulary(teacher_tokenizer, tokenizer, where)
        student = AutoModelForCausalLM.from_pretrained(g.student_model, use_safetensors=True, trust_remote_code=False)
        if student.get_input_embeddings().weight.shape[0] < len(teacher_tokenizer):
            raise ModelError(f"{where}: its embedding table has {student.get_input_embeddings().weight.shape[0]} "
                             f"rows for the teacher's {len(teacher_tokenizer)} tokens")
        return student, tokenizer, {"init": "model", "model": g.student_model}
    layers = list(g.student_layers) or layers_for_budget(teacher, g.student_max_parameter_fraction)
    return layer_subset_student(teacher, layers), teacher_tokenizer, {"init": "teacher_layers", "layers": layers}
