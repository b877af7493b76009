"""Resolve a teacher reference to a local directory and its `teacher_version`.

A reference is ``models:/<name>@<alias>`` (or ``/<version>``), a local directory saved with
``save_pretrained``, or a Hugging Face id already in the local HF cache (nothing downloads at run
time). teacher_version = registry version where there is one, plus the digest of the weights, so
re-registering identical weights does not invalidate the teacher cache, and new weights always do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.common.hashing import digest_dir
from components.common.home import Home


@dataclass(frozen=True)
class ResolvedTeacher:
    ref: str
    path: Path
    version: str
    registry_name: str = ""
    registry_version: str = ""


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
