"""Opt-in: build infra/Dockerfile with buildah (Debian's package; no Docker engine needed) and
run the image. Off by default (minutes, gigabytes): DISTILLOPS_BUILD_IMAGE=1 turns it on.

No container registry is reachable from the build machines, only Debian's and PyPI's, so the
Debian base image is made with debootstrap when it is not in buildah's store already, and torch
comes from the offline wheel directory in $PIP_FIND_LINKS when one is set (else from PyTorch's
CPU index, as in a normal build). $PIP_CERT, when set, is mounted as pip's CA bundle.

    apt-get install -y buildah debootstrap
    DISTILLOPS_BUILD_IMAGE=1 python -m pytest tests/infra/test_image_build.py -s
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/debian:bookworm-slim"
TAG = "localhost/distillops:test"
BUILDAH = ["buildah", "--storage-driver", "vfs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("DISTILLOPS_BUILD_IMAGE"), reason="opt-in: DISTILLOPS_BUILD_IMAGE=1"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah not installed (apt-get install buildah)"),
]


def _run(*args, **kwargs):
    return subprocess.run(list(args), check=True, text=True, **kwargs)


def _ensure_base(tmp_path: Path) -> None:
    if subprocess.run([*BUILDAH, "inspect", "--type", "image", BASE], capture_output=True).returncode == 0:
        return
    assert shutil.which("debootstrap"), "no base image and no debootstrap to make one (apt-get install debootstrap)"
    rootfs = tmp_path / "rootfs"
    _run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian")
    container = _run(*BUILDAH, "from", "scratch", capture_output=True).stdout.strip()
    try:
        _run(*BUILDAH, "copy", container, f"{rootfs}/", "/")
        _run(*BUILDAH, "commit", container, BASE)
    finally:
        subprocess.run([*BUILDAH, "rm", container], capture_output=True)


def test_image_builds_and_runs_the_cli(tmp_path):
    _ensure_base(tmp_path)
    wheels = os.environ.get("PIP_FIND_LINKS", "")
    build = [*BUILDAH, "bud", "--isolation", "chroot", "--pull-never", "-f", "infra/Dockerfile", "-t", TAG]
    ca = os.environ.get("PIP_CERT", "")
    if ca and Path(ca).is_file():  # a TLS-intercepting proxy's CA, as on the build machines
        build += ["--volume", f"{ca}:/etc/ssl/build-ca.crt:ro", "--build-arg", "PIP_CERT=/etc/ssl/build-ca.crt"]
    if wheels and Path(wheels).is_dir():
        build += ["--volume", f"{wheels}:{wheels}:ro", "--build-arg", f"PIP_FIND_LINKS={wheels}",
                  "--build-arg", "TORCH_INDEX_URL="]
    _run(*build, ".", cwd=ROOT)
    container = _run(*BUILDAH, "from", TAG, capture_output=True).stdout.strip()
    try:
        def inside(*cmd):
            return _run(*BUILDAH, "run", "--isolation", "chroot", container, "--", *cmd, capture_output=True).stdout

        assert "submit" in inside("distillops", "--help")
        # Everything a component imports is already installed: nothing pip-installs at pod start.
        versions = inside("python", "-c", "import kfp, kfp.kubernetes, torch, mlflow, dvc_s3, psycopg2; "
                          "print(kfp.__version__, torch.__version__)")
        assert versions.split()[0] == "2.17.3" and versions.split()[1].startswith("2.13.0")
        assert "distill_pipeline.yaml" in inside("distillops", "compile", "--output-dir", "/tmp/ir")
    finally:
        subprocess.run([*BUILDAH, "rm", container], capture_output=True)
