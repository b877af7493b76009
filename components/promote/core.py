"""Pure logic of promote: decide what registry change to make (the plan); the runner applies it.

Idempotent by content: a student whose weights are already registered is never registered twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionPlan:
    action: str  # "register" | "alias_existing" | "noop" | "refuse"
    reasons: tuple[str, ...]
    version: str | None = None  # the version that ends up champion (None until registered)
    previous: str | None = None  # the champion before, which becomes `previous`


def plan_promotion(gate_passed: bool, gate_reasons: list[str], existing_version: str | None,
                   champion_version: str | None) -> PromotionPlan:
    """`existing_version`: a registry version holding exactly these weights, if any."""
    if not gate_passed:
        return PromotionPlan("refuse", ("the benchmark gate failed", *gate_reasons))
    if existing_version is not None and existing_version == champion_version:
        return PromotionPlan("noop", (f"version {existing_version} with these weights is already champion",),
                             existing_version, None)
    if existing_version is not None:
        return PromotionPlan("alias_existing",
                             (f"these weights are registered as version {existing_version}; making it champion",),
                             existing_version, champion_version)
    return PromotionPlan("register", ("the gate passed; registering a new version",), None, champion_version)
