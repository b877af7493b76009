"""The one container image every component runs in (built from infra/Dockerfile, or
infra/Dockerfile.cuda for GPU nodes).

Pin it to a digest in production, when compiling::

    DISTILLOPS_IMAGE=registry.example.com/distillops@sha256:<64 hex> distillops compile

The value is read once, when the components are defined (at import), because KFP bakes the
image into each component's spec at that moment; `use_image` puts another reference into a compiled
IR file (``distillops compile|submit|schedule --image``).

A cluster submission with a movable tag (``:0.1.0``, ``:latest``) is refused unless asked for
(``--allow-mutable-image``): a tag rebuilt under the same name runs new code behind KFP's cache
keys, which name the image, and different pods may pull different builds (RELIABILITY item 36).
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


def check_pinned(reference: str, allow_mutable: bool = False) -> str:
    """`reference` if valid and pinned to a digest (or `allow_mutable`); else ImageError naming it."""
    check_reference(reference)
    if not is_pinned(reference) and not allow_mutable:
        raise ImageError(f"image {reference!r} is a movable tag: a rebuild under the same tag would run other code "
                         "behind the same cache keys. Pin it to a digest (name@sha256:<64 hex digits>, with --image "
                         "or DISTILLOPS_IMAGE), or pass --allow-mutable-image to submit it anyway")
    return reference


def use_image(ir_path, reference: str) -> None:
    """Make every task of a compiled IR YAML file (pipeline spec + platform spec) run `reference`."""
    from pathlib import Path

    import yaml

    check_reference(reference)
    path = Path(ir_path)
    docs = list(yaml.safe_load_all(path.read_text()))
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["image"] = reference
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


IMAGE = check_reference(os.environ.get("DISTILLOPS_IMAGE", DEFAULT_IMAGE))
