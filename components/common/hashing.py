"""Content hashes: the versions that drive reruns are digests of content, never of positions."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_digest(path: str | Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    return _file_digest(path, "sha256")


def md5_file(path: str | Path) -> str:
    """DVC 3's md5 of a single file (plain md5 of its bytes)."""
    return _file_digest(path, "md5")


def digest_dir(path: str | Path, patterns: tuple[str, ...] = ("*.safetensors", "config.json")) -> str:
    """sha256 over the names and bytes of the files matching `patterns` (weights + config)."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{root}: no files matching {', '.join(patterns)} to digest")
    for p in files:
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


# What a model directory serves: weights, config and every tokenizer file transformers may read.
MODEL_FILES = ("*.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
               "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def model_digest(path: str | Path) -> str:
    """The identity of a model directory: ``digest_dir`` over its weights, config and tokenizer.

    The gate binds its verdict to it and promote recomputes it over what it registers (the
    registry's ``model_digest`` tag); both call this one function.
    """
    return digest_dir(path, MODEL_FILES)
