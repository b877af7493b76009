"""HMAC-SHA256 signatures with the deployment's signing key: gate reports and teacher-cache records.

The key comes from the environment variable ``DISTILLOPS_SIGNING_KEY`` (on a cluster, fed from the
optional Kubernetes secret ``distillops-signing-key``, see ``pipelines/platform.py``). Without it
nothing is signed, and verification only checks what can be checked without a key (the gate
report's binding to the student, the cache's sha256 manifest). docs/promotion.md and
docs/teacher-cache.md say what each signature protects against.

A signature is ``"hmac-sha256:<hex>"``. A report is signed over its canonical JSON (sorted keys,
no whitespace) without the ``signature`` field, so re-indenting the file does not break it and
editing any value does. Comparisons use ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

KEY_ENV = "DISTILLOPS_SIGNING_KEY"
SIGNATURE_FIELD = "signature"
MIN_KEY_BYTES = 16
_PREFIX = "hmac-sha256:"


class SigningKeyError(ValueError):
    """The configured signing key is unusable (too short to be a secret)."""


def key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The signing key, or None when none is configured (unset or empty)."""
    value = (os.environ if environ is None else environ).get(KEY_ENV, "").strip()
    if not value:
        return None
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"{KEY_ENV} is {len(key)} bytes; a signing key needs at least {MIN_KEY_BYTES} "
                              f"(e.g. `openssl rand -hex 32`)")
    return key


def sign(data: bytes, key: bytes) -> str:
    return _PREFIX + hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: Any, key: bytes) -> bool:
    """Whether `signature` is `key`'s signature of `data` (False for anything not a signature)."""
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature.encode("utf-8", "replace"), sign(data, key).encode())


def canonical(obj: Any) -> bytes:
    """The bytes a JSON value is signed over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _unsigned(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != SIGNATURE_FIELD}


def sign_report(report: dict, key: bytes) -> dict:
    """A copy of `report` with its signature (over everything else in it)."""
    body = _unsigned(report)
    return {**body, SIGNATURE_FIELD: sign(canonical(body), key)}


def verify_report(report: dict, key: bytes | None) -> list[str]:
    """What is wrong with `report`'s signature under `key`; [] when it is signed by it, or when no
    key is configured (then a signature cannot be checked and is ignored)."""
    if key is None:
        return []
    signature = report.get(SIGNATURE_FIELD)
    if signature is None:
        return [f"the gate report is not signed, and a signing key is configured ({KEY_ENV}): only the gate, "
                f"which holds the key, writes reports promote accepts"]
    if not verify(canonical(_unsigned(report)), signature, key):
        return [f"the gate report's signature does not match its content under the configured key ({KEY_ENV}): "
                f"it was edited after the gate signed it, or signed with another key"]
    return []
