"""The one container image every component runs in (built from infra/Dockerfile).

Pin it to a digest in production: DISTILLOPS_IMAGE=ghcr.io/...@sha256:... when compiling.
"""

import os

IMAGE = os.environ.get("DISTILLOPS_IMAGE", "ghcr.io/distillops/distillops:0.1.0")
