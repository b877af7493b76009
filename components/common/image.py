"""The one container image every component runs in (built from infra/Dockerfile, or
infra/Dockerfile.cuda for GPU nodes).

Pin it to a digest in production, when compiling::

    DISTILLOPS_IMAGE=registry.example.com/distillops@sha256:<64 hex> distillops compile

The value is read once, when the components are defined (at import), because KFP bakes the
image into each component's spec at that moment.
"""

from __future__ import annotations

import os
import re

DEFAULT_IMAGE = "ghcr.io/distillops/distillops:0.1.0"

# name[:tag][@sha256:digest]; a registry host may carry a port (host:5000/name).
_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


class ImageError(ValueError):
    """An image reference that a container runtime would refuse."""


def check_reference(reference: str) -> str:
    """Return `reference` if it is a valid image reference; raise ImageError naming it otherwise."""
    match = _REFERENCE.match(reference)
    if not match or not (match["tag"] or match["digest"]):
        raise ImageError(f"DISTILLOPS_IMAGE={reference!r}: expected name:tag or name@sha256:<64 hex digits> "
                         "(a reference without a tag or digest would float to :latest)")
    return reference


def is_pinned(reference: str) -> bool:
    """True when the reference names an immutable digest, not a movable tag."""
    match = _REFERENCE.match(reference)
    return bool(match and match["digest"])


IMAGE = check_reference(os.environ.get("DISTILLOPS_IMAGE", DEFAULT_IMAGE))
