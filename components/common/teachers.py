"""Teachers: resolve a reference once and pin it, then load it through an adapter registered by kind.

**Resolve and pin.** A reference is ``models:/<name>@<alias>`` (or ``/<version>``), a local
directory saved with ``save_pretrained``, or a Hugging Face id already in the local HF cache
(nothing downloads at run time). :func:`resolve_teacher` turns it into a ``teacher_version``
(registry version where there is one, plus the digest of the weights) and a *pinned* reference
(``models:/<name>/<version>`` for an alias), at the first use of a run. Every later step calls
:func:`load_pinned` with that reference and version, which refuses weights whose version differs
(an alias moved mid-run, a directory rewritten): steps never silently use different teachers.

**Adapters.** How a teacher loads and which outputs it can produce is an adapter registered by
kind in ``ADAPTERS``, chosen from the model's ``config.json`` architectures. Today:
``sequence_classifier`` (class logits, and the pooled hidden states of any layer as
``pooled:<layer>``) and ``causal_lm`` (generations with per-token top-k log-probs, through
:meth:`LoadedTeacher.generate`). The steps ask the adapter, never the model class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.keyed import KeyRegistry
from components.common.modeling import ModelError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


class TeacherMismatchError(RuntimeError):
    """The teacher a step loaded is not the version the run pinned."""


@dataclass(frozen=True)
class ResolvedTeacher:
    ref: str
    path: Path
    version: str
    registry_name: str = ""
    registry_version: str = ""

    @property
    def pinned_ref(self) -> str:
        """The reference later steps load: an alias replaced by the version it pointed to."""
        if self.registry_name:
            return f"models:/{self.registry_name}/{self.registry_version}"
        return str(self.path) if not self.version.startswith("hf:") else self.ref


def resolve_teacher(ref: str, home: Home) -> ResolvedTeacher:
    from components.common import registry

    if registry.is_registry_uri(ref):
        client = registry.connect(home)
        path, mv = registry.download_model(client, home, registry.ModelRef.parse(ref))
        digest = digest_dir(path)
        return ResolvedTeacher(ref, path, f"{mv.name}/v{mv.version}+sha256:{digest[:16]}", mv.name, str(mv.version))
    local = Path(ref).expanduser()
    if local.is_dir():
        return ResolvedTeacher(ref, local.resolve(), f"local+sha256:{digest_dir(local)[:16]}")
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(ref, local_files_only=True))
    except Exception as exc:
        raise FileNotFoundError(
            f"teacher {ref!r}: not a registry reference (models:/name@alias), not a local directory, and not a "
            f"Hugging Face id present in the local cache (downloads are disabled at run time): {exc}"
        ) from None
    return ResolvedTeacher(ref, path, f"hf:{ref}+sha256:{digest_dir(path)[:16]}")


def pinned_ref_for(ref: str, version: str) -> str:
    """The pinned reference of a recorded (ref, teacher_version) pair: a registry version's
    ``<name>/v<n>+sha256:...`` pins ``models:/<name>/<n>`` even where the recorded ref was an alias."""
    match = re.match(r"^(?P<name>[^/@]+)/v(?P<number>\d+)\+sha256:", version or "")
    return f"models:/{match['name']}/{match['number']}" if match else ref


def load_pinned(ref: str, expected_version: str, home: Home, where: str = "teacher") -> ResolvedTeacher:
    """Resolve `ref` and check it is still `expected_version` (the run's pinned teacher_version).

    An empty `expected_version` (a step run by hand with no version) resolves `ref` as it is now.
    """
    teacher = resolve_teacher(ref, home)
    if expected_version and teacher.version != expected_version:
        raise TeacherMismatchError(
            f"{where} {ref!r} now resolves to {teacher.version}, but this run pinned {expected_version}: the alias "
            f"moved or the weights changed during the run. Rerun the pipeline to distil from the new teacher.")
    return teacher


# ---------------------------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadedTeacher:
    """A teacher ready to produce outputs. `produces` names the output families it can compute."""

    kind: str
    model: Any
    tokenizer: Any
    label_names: list[str]
    tokenizer_id: str
    num_layers: int
    produces: frozenset[str] = field(default_factory=frozenset)

    def compute(self, texts: Sequence[str], kinds: Sequence[str], max_length: int, batch_size: int = 64,
                desc: str | None = None) -> dict[str, np.ndarray]:
        """{kind: [len(texts), ...] float32} for each requested output kind, rows in input order."""
        return ADAPTERS.info(self.kind)["compute"](self, list(texts), list(kinds), max_length, batch_size, desc)

    def generation_keys(self, prompts: Sequence[str], teacher_version: str, decoding, k: int):
        """(rendered prompts, store keys) of a causal-LM teacher's generations for `prompts`."""
        from components.common.generation import generation_key, render_prompts

        if "generation" not in self.produces:
            raise ModelError(f"a {self.kind} teacher cannot generate; it produces {sorted(self.produces)}")
        rendered = render_prompts(self.tokenizer, prompts)
        return rendered, [generation_key(teacher_version, self.tokenizer_id, r, decoding, k) for r in rendered]

    def generate(self, rendered: Sequence[str], keys: Sequence[bytes], decoding, k: int, batch_size: int = 8,
                 progress=None) -> list:
        """The Generations of rendered prompts (see :meth:`generation_keys`), in input order."""
        from components.common.generation import generate_topk

        return generate_topk(self.model, self.tokenizer, rendered, keys, decoding, k, batch_size, progress)

    def check_kinds(self, kinds: Sequence[str]) -> None:
        bad = [k for k in kinds if k.split(":", 1)[0] not in self.produces]
        if bad:
            raise ModelError(f"a {self.kind} teacher cannot produce {bad}; it produces {sorted(self.produces)}")


# kind -> loader(path) -> LoadedTeacher; info: architectures (config.json suffixes), produces, compute
ADAPTERS: KeyRegistry = KeyRegistry("teacher kind")


def _classifier_compute(t: LoadedTeacher, texts, kinds, max_length, batch_size, desc):
    from components.common.modeling import teacher_features

    t.check_kinds(kinds)
    layers = sorted(int(k.split(":", 1)[1]) for k in kinds if k.startswith("pooled:"))
    bad = [x for x in layers if not 0 <= x <= t.num_layers]
    if bad:
        raise ModelError(f"distill.layer_map: teacher layer {bad[0]} out of range; the teacher has {t.num_layers} "
                         f"layers (valid: 0..{t.num_layers}, 0 = embeddings)")
    out = teacher_features(t.model, t.tokenizer, texts, max_length, layers, batch_size, desc=desc)
    return {k: out[k] for k in kinds}


@ADAPTERS.register("sequence_classifier", architectures=("ForSequenceClassification",),
                   produces=frozenset({"logits", "pooled"}), compute=_classifier_compute)
def _load_classifier(path: Path) -> LoadedTeacher:
    from components.common.modeling import label_names, load_classifier

    model, tokenizer = load_classifier(path)
    return LoadedTeacher("sequence_classifier", model, tokenizer, label_names(model), tokenizer_id(path),
                         int(model.config.num_hidden_layers), frozenset({"logits", "pooled"}))


def _causal_lm_compute(t: LoadedTeacher, texts, kinds, max_length, batch_size, desc):
    t.check_kinds(kinds)
    raise ModelError("a causal_lm teacher's outputs are generations: use LoadedTeacher.generate")


@ADAPTERS.register("causal_lm", architectures=("ForCausalLM",), produces=frozenset({"generation"}),
                   compute=_causal_lm_compute)
def _load_causal_lm(path: Path) -> LoadedTeacher:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.common.generation import tokenizer_digest

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    model.eval()
    if tokenizer.pad_token is None:  # batched generation pads on the left; EOS is the usual pad
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedTeacher("causal_lm", model, tokenizer, [], tokenizer_digest(path),
                         int(model.config.num_hidden_layers), frozenset({"generation"}))


def tokenizer_id(path: str | Path) -> str:
    """Identity of a model directory's tokenizer (part of every cache key)."""
    return digest_dir(path, TOKENIZER_FILES)[:16]


def adapter_kind(path: str | Path) -> str:
    """The registered adapter kind for the model saved at `path` (by its config's architectures)."""
    config = Path(path, "config.json")
    if not config.is_file():
        raise ModelError(f"{path}: no config.json; expected a directory saved with save_pretrained")
    architectures = json.loads(config.read_text()).get("architectures") or []
    for kind, _ in ADAPTERS.items():
        suffixes = ADAPTERS.info(kind)["architectures"]
        if any(a.endswith(suffixes) for a in architectures):
            return kind
    raise ModelError(f"{path}: no teacher adapter for architectures {architectures}; known kinds: "
                     + ", ".join(f"{k} ({', '.join(ADAPTERS.info(k)['architectures'])})" for k in ADAPTERS.keys()))


def load_teacher(teacher: ResolvedTeacher | str | Path) -> LoadedTeacher:
    """Load a resolved teacher (or a model directory) through its kind's adapter."""
    path = teacher.path if isinstance(teacher, ResolvedTeacher) else Path(teacher)
    return ADAPTERS.get(adapter_kind(path))(path)
