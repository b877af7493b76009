"""Generative students: a subset of a causal-LM teacher's layers, a narrower config of the same
architecture, or any causal LM that shares the teacher's tokenizer (anything else is an error
before training: the cached top-k token ids would mean other tokens); optionally trained through
LoRA adapters that are merged before the student is saved."""

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
    num_kv_heads = num_kv_heads or num_heads
    if min(hidden_size, intermediate_size, num_layers, num_heads) < 1:
        raise ModelError(f"narrow student: every size must be >= 1, got hidden_size {hidden_size}, intermediate_size "
                         f"{intermediate_size}, num_layers {num_layers}, num_heads {num_heads}")
    if hidden_size % num_heads:
        raise ModelError(f"narrow student: hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    if num_heads % num_kv_heads:
        raise ModelError(f"narrow student: num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}")
    config = copy.deepcopy(teacher.config)
    config.hidden_size, config.intermediate_size = hidden_size, intermediate_size
    config.num_hidden_layers, config.num_attention_heads = num_layers, num_heads
    config.num_key_value_heads = num_kv_heads
    if hasattr(config, "head_dim"):
        config.head_dim = hidden_size // num_heads
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:1] * num_layers
    torch.manual_seed(seed)
    student = type(teacher)(config)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student


def narrow_shape(teacher_config, g) -> dict[str, int]:
    """The narrow student's sizes from generation.student_* (each 0 = derived from the teacher: half
    its hidden size, its feed-forward to hidden ratio, half its layers, its attention heads; key-value
    heads are the teacher's where they divide the student's heads, else one per head). A shape that
    cannot work is a ModelError naming the key, before any model is built."""
    t_hidden, t_heads = int(teacher_config.hidden_size), int(teacher_config.num_attention_heads)
    t_kv = int(getattr(teacher_config, "num_key_value_heads", None) or t_heads)
    hidden = g.student_hidden_size or max(t_hidden // 2, 1)
    intermediate = g.student_intermediate_size or max(round(teacher_config.intermediate_size * hidden / t_hidden), 1)
    layers = g.student_num_layers or max(int(teacher_config.num_hidden_layers) // 2, 1)
    heads = g.student_num_heads or t_heads
    derived = "" if g.student_num_heads else " (the teacher's head count; set generation.student_num_heads)"
    if hidden % heads:
        raise ModelError(f"generation.student_hidden_size: {hidden} is not a multiple of generation.student_num_heads "
                         f"{heads}{derived}")
    return {"hidden_size": hidden, "intermediate_size": intermediate, "num_layers": layers, "num_heads": heads,
            "num_kv_heads": t_kv if heads % t_kv == 0 else heads}


def build_narrow_student(teacher, g, seed: int = 0):
    """narrow_student with narrow_shape's sizes, checked by one forward pass: a shape the architecture
    cannot run (an odd head size under rotary embeddings, ...) fails here, naming the keys, not mid-training."""
    shape = narrow_shape(teacher.config, g)
    student = narrow_student(teacher, seed=seed, **shape)
    try:
        with torch.no_grad():
            student(input_ids=torch.zeros((1, 2), dtype=torch.long))
    except (RuntimeError, ValueError) as exc:
        head = shape["hidden_size"] // shape["num_heads"]
        raise ModelError(f"generation.student_hidden_size / student_num_heads: a {type(teacher).__name__} of {shape} "
                         f"(head size {head}, which rotary position embeddings need even) does not run: {exc}") from None
    return student, shape


def lora_student(student, r: int, alpha: int, dropout: float = 0.0):
    """The student with LoRA adapters (Hu et al. 2021) of rank `r` on its attention's query and value
    projections, every other weight frozen (peft). merge_and_unload() folds them back into plain weights."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ModelError("generation.lora_r > 0 needs peft installed (pip install peft)") from exc
    names = {n.rsplit(".", 1)[-1] for n, _ in student.named_modules()}
    modules = sorted(names & {"q_proj", "v_proj", "query", "value", "c_attn", "query_key_value"})
    if not modules:
        raise ModelError(f"generation.lora_r: {type(student).__name__} has no attention query/value projection "
                         f"(q_proj, v_proj, ...) to put LoRA adapters on")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type="CAUSAL_LM")
    return get_peft_model(student, config)


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


def build_lm_student(teacher, teacher_tokenizer, g, seed: int = 0) -> tuple[object, object, dict]:
    """The generative student a GenerationConfig (config.generation) asks for, with its tokenizer and
    a description for the lineage: `student_model` (any causal LM with the teacher's tokenizer; a
    different tokenizer is a ModelError here, before any training), else by `student_init`: the
    teacher's decoder layers `student_layers` (empty: as many as fit in `student_max_parameter_fraction`,
    layers_for_budget), or a narrow student (narrow_shape, random weights seeded by `seed`). With
    `lora_r` > 0 it is wrapped in LoRA adapters (lora_student); the caller merges them before saving."""
    if g.student_model:
        student, tokenizer, init = _pretrained_student(teacher_tokenizer, g.student_model)
    elif g.student_init == "narrow":
        student, shape = build_narrow_student(teacher, g, seed)
        tokenizer, init = teacher_tokenizer, {"init": "narrow", **shape, "seed": seed}
    else:
        layers = list(g.student_layers) or layers_for_budget(teacher, g.student_max_parameter_fraction)
        student, tokenizer = layer_subset_student(teacher, layers), teacher_tokenizer
        init = {"init": "teacher_layers", "layers": layers}
    if g.lora_r > 0:
        student = lora_student(student, g.lora_r, g.lora_alpha)
        trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
        init["lora"] = {"r": g.lora_r, "alpha": g.lora_alpha, "target_modules": sorted(student.peft_config[
            "default"].target_modules), "trainable_parameters": trainable, "merged": True}
    return student, tokenizer, init


def _pretrained_student(teacher_tokenizer, path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = f"generation.student_model {path}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}: no loadable tokenizer ({exc}); expected a causal-LM directory saved with "
                         f"save_pretrained and the teacher's tokenizer") from None
    check_same_vocabulary(teacher_tokenizer, tokenizer, where)
    student = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    if student.get_input_embeddings().weight.shape[0] < len(teacher_tokenizer):
        raise ModelError(f"{where}: its embedding table has {student.get_input_embeddings().weight.shape[0]} "
                         f"rows for the teacher's {len(teacher_tokenizer)} tokens")
    return student, tokenizer, {"init": "model", "model": path}


def merged(student):
    """A LoRA student (lora_student) with its adapters folded into plain weights; any other as it is."""
    return student.merge_and_unload() if hasattr(student, "merge_and_unload") else student
