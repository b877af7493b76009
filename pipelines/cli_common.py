"""What the CLI's command modules share: common options, the config and home of a command, and
keeping stdout clean for --json."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EPILOG = "All state (MLflow registry, DVC remote, teacher cache, pipeline root, reports) lives under --home."


def add_common(p: argparse.ArgumentParser, config: bool = True, home: bool = True) -> None:
    if home:
        p.add_argument("--home", help="state directory (default: $DISTILLOPS_HOME or ./.distillops)")
    if config:
        p.add_argument("--config", help="YAML config file with any subset of params.yaml's keys "
                       "(default: none, the built-in defaults, which params.yaml lists)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. --set distill.epochs=2 (repeatable; default: none)")


def config_of(args):
    """The command's config: defaults, --config, --set; validated (loss keys and builders included)."""
    from pipelines.parameters import resolve_config

    return resolve_config(args.config, args.overrides)


def home_of(args):
    from components.common.home import Home

    return Home.resolve(args.home).ensure()


@contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """kfp.local streams task logs to stdout; with --json, stdout must carry the JSON alone."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
