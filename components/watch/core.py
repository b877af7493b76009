"""Pure logic of watch: compare the versions a run would use now with the champion's lineage.

The champion's registry version carries lineage tags (set by promote): ``data_version``,
``teacher_version`` and ``config_hash``. A rerun is due when any of them differs from what the DAG
would use now, or when there is no champion yet.
"""

from __future__ import annotations

from dataclasses import dataclass

WATCHED = ("data_version", "teacher_version", "config_hash")


@dataclass(frozen=True)
class WatchDecision:
    rerun: bool
    reasons: tuple[str, ...]
    current: dict[str, str]
    champion: dict[str, str]


def decide(current: dict[str, str], champion_tags: dict[str, str] | None) -> WatchDecision:
    """Every watched key that changed (with both values), or 'nothing changed'."""
    missing = [k for k in WATCHED if k not in current]
    if missing:
        raise ValueError(f"current versions lack {missing}; expected {list(WATCHED)}")
    if champion_tags is None:
        return WatchDecision(True, ("no champion in the registry yet",), dict(current), {})
    lineage = {k: champion_tags.get(k, "") for k in WATCHED}
    reasons = tuple(f"{k} changed: champion has {lineage[k] or '(none)'}, now {current[k]}"
                    for k in WATCHED if lineage[k] != current[k])
    if not reasons:
        return WatchDecision(False, ("nothing changed: data, teacher and config match the champion's lineage",),
                             dict(current), lineage)
    return WatchDecision(True, reasons, dict(current), lineage)
