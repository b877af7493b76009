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


INT8_CHECK = "student_int8_accuracy_retention"


def int8_decision(report: dict) -> dict:
    """Whether promote emits the int8 student (gate.emit_quantized_student), from the gate report's
    own figures: {"emit": bool, "why": str, and when measured its accuracy, retention and speed}.
    Emitted only when the report measured it and it keeps the gate's accuracy retention."""
    check = next((c for c in report.get("checks", []) if c.get("name") == INT8_CHECK), None)
    card = (report.get("models") or {}).get("student_int8")
    if check is None or not isinstance(card, dict):
        return {"emit": False, "why": "the gate report measured no int8 student (gate.quantized_student was off)"}
    figures = {"accuracy": card.get("accuracy"), "accuracy_retention": check.get("value"),
               "min_accuracy_retention": check.get("threshold"),
               "throughput_rows_per_s": card.get("throughput_rows_per_s"),
               "latency_p50_ms": card.get("latency_p50_ms")}
    if not check.get("passed"):
        return {"emit": False, "why": f"the int8 student's accuracy retention {check.get('value')} is below "
                                      f"{check.get('threshold')}", **figures}
    return {"emit": True, "why": f"the int8 student keeps accuracy retention {check.get('value')} "
                                 f">= {check.get('threshold')}", **figures}


def report_task(report: dict) -> str:
    """The task a gate report judged: its context's ``task`` (the generative gate writes
    "generation"); a report without one is the classification gate's (written before tasks)."""
    context = report.get("context") if isinstance(report, dict) else None
    task = context.get("task") if isinstance(context, dict) else None
    return "classification" if task is None else str(task)


def binding_problems(report: dict, bound: dict[str, str], task: str | None = None) -> list[str]:
    """Every way a gate report is not bound to the student about to be registered; [] when it is.

    `bound` is what promote recomputed over the student (``lineage.bound_context``: its model
    digest and lineage); the report's ``context`` must carry the same values, because that is what
    the gate measured. A report without them (hand-written, or from before binding) is refused.
    `task`, when given, is the student's task (``lineage.student_task``): a report of the other
    gate (a classification report for a causal-LM student, or the reverse) is refused as well.
    """
    if not isinstance(report, dict) or not isinstance(report.get("passed"), bool):
        return ['not a gate report: it has no boolean "passed"']
    context = report.get("context")
    context = context if isinstance(context, dict) else {}
    problems = []
    if task is not None and report_task(report) != task:
        problems.append(f"task: the gate report is the {report_task(report)} gate's, the student is a {task} model")
    for key, want in bound.items():
        got = context.get(key)
        if got != want:
            problems.append(f"{key}: the gate report says {'none' if got is None else repr(got)}"
                            f"{' (not bound to any student)' if got is None else ''}, the student has {want!r}")
    return problems


# ---------------------------------------------------------------------------------------------
# The ledger fold: who is champion after an ordered list of records. Every process folds the same
# records in the same order, so they all agree on the outcome of every attempt, however the
# attempts raced. A promotion applies only if the champion it was gated against is still champion
# (compare-and-set, decided by the order of the ledger, not by who wrote an alias last).
# ---------------------------------------------------------------------------------------------

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class ChampionState:
    champion: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class Outcome:
    status: str  # "applied" | "rejected" | "recorded" (a refusal: no registry change asked)
    why: str
    champion: str | None
    previous: str | None

    def to_dict(self) -> dict:
        return {"status": self.status, "why": self.why, "champion": self.champion, "previous": self.previous}


def _norm(version) -> str | None:
    return None if version in (None, "", "none") else str(version)


def apply_record(state: ChampionState, record: dict) -> tuple[ChampionState, Outcome]:
    """One step of the fold: the new state and the outcome of `record` given `state`."""
    action = record.get("action")
    expected = _norm(record.get("expected_champion"))
    version = _norm(record.get("version"))

    def rejected(why: str) -> tuple[ChampionState, Outcome]:
        return state, Outcome("rejected", why, state.champion, state.previous)

    if action == "refuse":
        return state, Outcome("recorded", "refusal recorded; no registry change", state.champion, state.previous)
    if action == "adopt":
        # The aliases found on a registry that had no ledger yet become the ledger's starting state.
        if state.champion is not None or version is None:
            return rejected("the ledger already has a champion; nothing to adopt")
        new = ChampionState(version, _norm(record.get("previous")))
        return new, Outcome("applied", f"adopted the existing aliases: champion {version}, previous "
                            f"{new.previous or 'none'}", new.champion, new.previous)
    if action not in ("promote", "rollback"):
        return rejected(f"unknown action {action!r}")
    if expected != state.champion:
        return rejected(f"champion is {state.champion or 'none'}, not {expected or 'none'} as this {action} "
                        f"expected: another change landed first; re-run the gate against the new champion")
    if action == "promote":
        if version is None:
            return rejected("promotion names no version")
        if version == state.champion:
            return rejected(f"version {version} is already champion")
        new = ChampionState(version, state.champion)
        return new, Outcome("applied", f"version {version} is champion; {state.champion or 'none'} is previous",
                            new.champion, new.previous)
    if state.previous is None:
        return rejected("there is no previous champion to roll back to")
    if version != state.previous:
        return rejected(f"rollback target {version or 'none'} is not the previous champion {state.previous}")
    new = ChampionState(state.previous, state.champion)
    return new, Outcome("applied", f"rolled back: version {new.champion} is champion again; {new.previous} is "
                        f"previous", new.champion, new.previous)


def fold_ledger(records: list[dict]) -> tuple[ChampionState, list[Outcome]]:
    state, outcomes = ChampionState(), []
    for record in records:
        state, outcome = apply_record(state, record)
        outcomes.append(outcome)
    return state, outcomes


# ---------------------------------------------------------------------------------------------
# The audit chain: entry n carries hash_n = sha256(hash_{n-1} + canonical(entry n)). Editing any
# entry changes its hash and breaks every link after it; deleting one leaves a gap in `seq` or a
# broken link; deleting the tail is caught against the registry's mirror of the hashes.
# ---------------------------------------------------------------------------------------------


def canonical(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, record: dict, outcome: dict) -> str:
    import hashlib

    body = canonical({"seq": seq, "record": record, "outcome": outcome})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def chain_entries(records: list[tuple[int, dict]], outcomes: list[Outcome], prev_hash: str = GENESIS_HASH,
                  ) -> list[dict]:
    """Audit entries (with their links) for consecutive (seq, record) pairs and their outcomes."""
    entries = []
    for (seq, record), outcome in zip(records, outcomes, strict=True):
        h = entry_hash(prev_hash, seq, record, outcome.to_dict())
        entries.append({"seq": seq, "record": record, "outcome": outcome.to_dict(), "prev_hash": prev_hash,
                        "hash": h})
        prev_hash = h
    return entries


def verify_chain(entries: list[dict]) -> list[str]:
    """Every problem of an audit log read back: edits, deletions, reordering. [] when intact."""
    problems = []
    prev = GENESIS_HASH
    for i, e in enumerate(entries, start=1):
        if not isinstance(e, dict) or not {"seq", "record", "outcome", "prev_hash", "hash"} <= set(e):
            problems.append(f"entry {i}: not an audit entry ({str(e)[:80]})")
            prev = None
            continue
        if e["seq"] != i:
            problems.append(f"entry {i}: has seq {e['seq']}, expected {i} (an entry was deleted or moved)")
        if prev is not None and e["prev_hash"] != prev:
            problems.append(f"entry {i} (seq {e['seq']}): links to {e['prev_hash'][:12]}, but the entry before "
                            f"hashes to {prev[:12]} (an entry before it was edited or deleted)")
        recomputed = entry_hash(e["prev_hash"], e["seq"], e["record"], e["outcome"])
        if recomputed != e["hash"]:
            problems.append(f"entry {i} (seq {e['seq']}): content hashes to {recomputed[:12]}, recorded "
                            f"{e['hash'][:12]} (the entry was edited)")
        prev = e["hash"]
    return problems


def compare_with_mirror(entries: list[dict], mirror: list[tuple[int, dict, dict]]) -> list[str]:
    """Problems between the audit log and the registry's ledger (seq, record, tags with audit_hash)."""
    problems = []
    by_seq = {e["seq"]: e for e in entries if isinstance(e, dict) and "seq" in e}
    mirror_seqs = {seq for seq, _, _ in mirror}
    for seq, record, tags in mirror:
        e = by_seq.get(seq)
        if e is None:
            synced = " (the registry says it was written to an audit log: it was deleted)" if tags.get(
                "audit_hash") else ""
            problems.append(f"ledger entry {seq} is in the registry but not in the audit log{synced}")
            continue
        if canonical(e["record"]) != canonical(record):
            problems.append(f"entry {seq}: the audit log's record differs from the registry's")
        if tags.get("audit_hash") and tags["audit_hash"] != e["hash"]:
            problems.append(f"entry {seq}: the audit log's hash {e['hash'][:12]} differs from the registry's "
                            f"mirror {tags['audit_hash'][:12]}")
    for seq in sorted(set(by_seq) - mirror_seqs):
        problems.append(f"entry {seq} is in the audit log but not in the registry's ledger (deleted there)")
    return problems
