"""What the benchmarks read from a distillops home a pipeline ran in."""

from __future__ import annotations

import json
from pathlib import Path


def snapshots(home: Path) -> dict[str, Path]:
    """The versioned snapshot of each data version under the home's pipeline root. kfp.local's cache
    runs version_data once per data version, so only the first run of a version holds the file."""
    found = {}
    for out in sorted(Path(home).glob("pipeline-root/*/version-data/executor_output.json")):
        if (out.parent / "dataset").is_file():
            found.setdefault(json.loads(out.read_text())["parameterValues"]["Output"], out.parent / "dataset")
    return found
