"""The generation TeacherOutputs artifact: a causal-LM teacher's generations for every prompt of a
prompt snapshot, aligned with its rows (task: generation's counterpart of teacher_outputs.py).

One safetensors file, its header's keys sorted (``canonical_safetensors``), so equal contents are
equal bytes and the file's sha256 is stable across reruns, shard counts and processes:

- ``lengths`` int32 [rows]: generated tokens per prompt (EOS included when the teacher stopped);
- ``tokens`` uint16 [sum(lengths)]: every row's generated token ids, concatenated in row order;
- ``topk_ids`` uint16 and ``topk_logprobs`` float16 [sum(lengths), k]: at each generated position,
  the teacher's k most likely next tokens (most likely first) and their log-probabilities;
- ``tail`` float32 [sum(lengths)]: the probability mass outside those k tokens.

Metadata: ``format`` (``distillops-generations/1``), ``teacher_version``, ``k``, ``decoding`` (JSON of
the decoding parameters), ``keys`` (JSON list of each row's store key, hex), ``prompts_sha256``
(texts_digest of the snapshot's prompts in row order: :func:`check_generations_aligned` refuses the
outputs of other prompts or another order). Row i is ``tokens[offsets[i]:offsets[i + 1]]`` with
``offsets = [0, *cumsum(lengths)]`` (:meth:`GenerationOutputs.generation`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from components.common.generation import Generation
from components.common.io import atomic_write_bytes
from components.common.teacher_outputs import TeacherOutputsError, canonical_safetensors, texts_digest

FORMAT = "distillops-generations/1"
_TENSORS = (("tokens", np.uint16), ("topk_logprobs", np.float16), ("topk_ids", np.uint16), ("tail", np.float32))


@dataclass(frozen=True)
class GenerationOutputs:
    teacher_version: str
    k: int
    decoding: dict
    keys: list[str]  # hex store keys, one per row
    lengths: np.ndarray  # [rows] int32
    tokens: np.ndarray  # [sum(lengths)] uint16
    topk_logprobs: np.ndarray  # [sum(lengths), k] float16
    topk_ids: np.ndarray  # [sum(lengths), k] uint16
    tail: np.ndarray  # [sum(lengths)] float32
    prompts_sha256: str = ""

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def generation(self, i: int) -> Generation:
        """Row i's teacher generation (views into the arrays)."""
        a, b = (int(x) for x in self.offsets[i:i + 2])
        return Generation(self.tokens[a:b], self.topk_logprobs[a:b], self.topk_ids[a:b], self.tail[a:b])

    def generations(self, indices: Sequence[int] | None = None) -> list[Generation]:
        return [self.generation(i) for i in (range(len(self)) if indices is None else indices)]


def pack_generations(rows: Sequence[Generation], k: int, teacher_version: str, decoding: dict, keys: Sequence[bytes],
                     prompts: Sequence[str]) -> GenerationOutputs:
    """The artifact's contents from per-row Generations (in prompt order)."""
    if not len(rows) == len(keys) == len(prompts):
        raise ValueError(f"{len(rows)} generations, {len(keys)} keys, {len(prompts)} prompts")
    arrays = {}
    for name, dtype in _TENSORS:
        parts = [np.asarray(getattr(g, name), dtype=dtype) for g in rows]
        parts = [x.reshape(-1, k) for x in parts] if name.startswith("topk") else parts
        empty = np.zeros((0, k) if name.startswith("topk") else 0, dtype)
        arrays[name] = np.ascontiguousarray(np.concatenate(parts) if parts else empty)
    return GenerationOutputs(teacher_version, k, dict(decoding), [x.hex() for x in keys],
                             np.array([len(g.tokens) for g in rows], dtype=np.int32), prompts_sha256=texts_digest(prompts),
                             **arrays)


def generation_outputs_bytes(outputs: GenerationOutputs) -> bytes:
    """The canonical bytes of the artifact (what write_generation_outputs writes)."""
    tensors = {"lengths": np.ascontiguousarray(outputs.lengths, dtype=np.int32),
               **{name: np.ascontiguousarray(getattr(outputs, name), dtype=dtype) for name, dtype in _TENSORS}}
    metadata = {"format": FORMAT, "teacher_version": outputs.teacher_version, "k": str(outputs.k),
                "decoding": json.dumps(outputs.decoding, sort_keys=True), "keys": json.dumps(outputs.keys),
                "prompts_sha256": outputs.prompts_sha256}
    return canonical_safetensors(save(tensors, metadata=metadata))


def write_generation_outputs(outputs: GenerationOutputs, path: str | Path) -> bytes:
    """Write the artifact atomically; returns its bytes (hash them for the artifact's digest)."""
    payload = generation_outputs_bytes(outputs)
    atomic_write_bytes(path, payload)
    return payload


def read_generation_outputs(path: str | Path) -> GenerationOutputs:
    path = Path(path)
    if not path.is_file():
        raise TeacherOutputsError(f"{path}: generation outputs not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise TeacherOutputsError(f"{path}: not a {FORMAT} file (format {meta.get('format')!r}); "
                                          f"a classification TeacherOutputs artifact? this step runs task: generation")
            arrays = {name: f.get_tensor(name) for name in ("lengths", *(n for n, _ in _TENSORS))}
    except SafetensorError as exc:
        raise TeacherOutputsError(f"{path}: not a readable safetensors file ({exc})") from None
    return GenerationOutputs(meta["teacher_version"], int(meta["k"]), json.loads(meta["decoding"]),
                             json.loads(meta["keys"]), prompts_sha256=meta.get("prompts_sha256", ""), **arrays)


def check_generations_aligned(outputs: GenerationOutputs, prompts: Sequence[str], where: str | Path) -> None:
    """Raise TeacherOutputsError unless `outputs` hold one consistent generation per prompt of `prompts`."""
    problems = []
    total = int(outputs.lengths.sum()) if len(outputs.lengths) else 0
    if len(outputs) != len(prompts) or len(outputs.keys) != len(prompts):
        problems.append(f"{len(outputs)} generations ({len(outputs.keys)} keys) for {len(prompts)} prompts")
    if outputs.prompts_sha256 != texts_digest(prompts):
        problems.append("the generations were made for other prompts or another row order (prompts_sha256 differs)")
    shapes = {"tokens": (total,), "tail": (total,), "topk_ids": (total, outputs.k), "topk_logprobs": (total, outputs.k)}
    for name, shape in shapes.items():
        if getattr(outputs, name).shape != shape:
            problems.append(f"{name}: shape {list(getattr(outputs, name).shape)}, expected {list(shape)}")
    if not problems and not (np.isfinite(outputs.topk_logprobs).all() and np.isfinite(outputs.tail).all()):
        problems.append("top-k log-probs or tail hold NaN or Inf")
    if problems:
        raise TeacherOutputsError(f"{where}: generation outputs do not match the prompt snapshot: "
                                  f"{'; '.join(problems)}. Rerun cache_teacher_outputs on this snapshot.")
