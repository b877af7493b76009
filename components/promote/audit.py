"""The promotion ledger's edge: sync it into the home's hash-chained audit log, materialise the
aliases, verify, show, roll back. docs/promotion.md describes the protocol.

The registry's ledger (``<model>-ledger`` versions, see ``registry.append_ledger``) orders every
attempt; ``promote.core.fold_ledger`` decides each one; this module writes the results:

- ``<home>/audit/<model>.jsonl``: one hash-chained entry per ledger record (append-only);
- the registry: each ledger version tagged with its outcome and chain hash (the mirror), the
  model tagged ``audit_head``; the aliases ``champion`` and ``previous`` set to the fold's state.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from components.common import registry
from components.common.home import Home
from components.common.io import file_lock
from components.common.paths import safe_name, within
from components.promote.core import (
    GENESIS_HASH,
    ChampionState,
    Outcome,
    canonical,
    chain_entries,
    compare_with_mirror,
    fold_ledger,
    verify_chain,
)

log = logging.getLogger(__name__)


class AuditError(RuntimeError):
    """The audit log or the registry's ledger was tampered with, or disagree: nothing is changed."""


def audit_path(home: Home, name: str) -> Path:
    """<home>/audit/<name>.jsonl; a name with a path in it, or a symlink out of the home, is refused."""
    return within(home.root, home.root / "audit" / f"{safe_name(name, 'model name')}.jsonl")


def actor() -> str:
    """Who: DISTILLOPS_ACTOR (a CI job, a service account), else user@host."""
    if os.environ.get("DISTILLOPS_ACTOR"):
        return os.environ["DISTILLOPS_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_record(action: str, model: str, version: str | None, expected_champion: str | None,
               reasons: list[str], lineage: dict) -> dict:
    """A ledger record: who/what/when/why and the lineage; small enough for a registry tag."""
    record = {"action": action, "model": model, "version": version, "expected_champion": expected_champion,
              "actor": actor(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "attempt_id": uuid.uuid4().hex, "reasons": [str(r)[:300] for r in reasons][:10],
              "lineage": {k: str(v)[:1000] for k, v in lineage.items()}}
    while len(canonical(record)) > registry.MAX_RECORD_CHARS and record["reasons"]:
        record["reasons"].pop()
    if len(canonical(record)) > registry.MAX_RECORD_CHARS:
        record["lineage"] = {k: v[:120] for k, v in record["lineage"].items()}
    return record


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"unparseable_line": n})
    return entries


def _locked(path: Path):
    # Serialises appends by processes sharing this home; across machines the registry's version
    # numbers order entries, and every home derives the same chain from them.
    return file_lock(path.with_suffix(".lock"))


def _check_ledger(ledger: list[tuple[int, dict, dict]], name: str) -> None:
    seqs = [seq for seq, _, _ in ledger]
    if seqs != list(range(1, len(seqs) + 1)):
        missing = sorted(set(range(1, (max(seqs) if seqs else 0) + 1)) - set(seqs))
        raise AuditError(f"the registry's ledger of {name} lacks entries {missing}: it was edited; refusing to "
                         f"change the registry (run `distillops audit verify`)")


def sync(client, home: Home, name: str, max_rounds: int = 50) -> tuple[ChampionState, list[dict]]:
    """Bring the audit log and the aliases up to date with the ledger; return the state and the log.

    Safe to run from any number of processes at once: the log append is locked, the tags are
    deterministic, and alias writes repeat until the ledger did not grow during them, so the last
    writer always writes the state of the complete ledger.
    """
    path = audit_path(home, name)
    if not registry.read_ledger(client, name):
        aliases = registry.get_aliases(client, name)
        if aliases.get("champion"):
            registry.append_ledger(client, name, canonical(new_record(
                "adopt", name, aliases["champion"], None, ["aliases set before this registry had a ledger"],
                {"previous": aliases.get("previous", "")}) | {"previous": aliases.get("previous")}))
    for _ in range(max_rounds):
        with _locked(path):
            # The ledger is read under the log's lock: the log only grows from a ledger read under
            # this lock, so this read is never shorter than the log. (Read before taking the lock,
            # a racing sync could extend the log past it, and this one would report the missing
            # tail as deleted from the registry.)
            ledger = registry.read_ledger(client, name)
            _check_ledger(ledger, name)
            state, outcomes = fold_ledger([rec for _, rec, _ in ledger])
            entries = read_log(path)
            problems = verify_chain(entries) + compare_with_mirror(entries, [
                t for t in ledger if t[0] <= len(entries)])
            if len(entries) > len(ledger):
                problems.append(f"the audit log has {len(entries)} entries, the registry's ledger {len(ledger)}")
            if problems:
                raise AuditError(f"audit log {path} and the registry disagree; refusing to change the registry: "
                                 + "; ".join(problems))
            prev = entries[-1]["hash"] if entries else GENESIS_HASH
            fresh = chain_entries([(seq, rec) for seq, rec, _ in ledger[len(entries):]], outcomes[len(entries):],
                                  prev)
            if fresh:
                with open(path, "a") as f:
                    f.write("".join(canonical(e) + "\n" for e in fresh))
                    f.flush()
                    os.fsync(f.fileno())
            entries += fresh
        for (seq, _, tags), entry in zip(ledger, entries, strict=True):
            if tags.get("audit_hash") != entry["hash"]:
                registry.tag_ledger_entry(client, name, seq, {"outcome": canonical(entry["outcome"]),
                                                              "audit_hash": entry["hash"]})
        if entries:
            registry.set_model_tag(client, name, "audit_head", f"{entries[-1]['seq']}:{entries[-1]['hash']}")
        _materialise(client, name, state)
        if len(registry.read_ledger(client, name)) == len(ledger):
            return state, entries
    raise AuditError(f"the ledger of {name} kept growing during {max_rounds} sync rounds")


def _materialise(client, name: str, state: ChampionState) -> None:
    aliases = registry.get_aliases(client, name)
    # `previous` first: a crash between the two writes leaves the serving champion untouched.
    if state.previous is not None and aliases.get("previous") != state.previous:
        registry.set_alias(client, name, "previous", state.previous)
    if state.champion is not None and aliases.get("champion") != state.champion:
        registry.set_alias(client, name, "champion", state.champion)


def append_and_sync(client, home: Home, name: str, record: dict) -> tuple[int, Outcome, ChampionState]:
    """Append `record`, sync; return its sequence number, its outcome and the state after."""
    seq = registry.append_ledger(client, name, canonical(record))
    state, entries = sync(client, home, name)
    outcome = entries[seq - 1]["outcome"]
    return seq, Outcome(**outcome), state


def verify(client, home: Home, name: str) -> list[str]:
    """Every problem with the audit log of `name`, read-only. [] means intact and up to date."""
    path = audit_path(home, name)
    entries = read_log(path)
    ledger = registry.read_ledger(client, name)
    problems = verify_chain(entries) + compare_with_mirror(entries, ledger)
    seqs = [seq for seq, _, _ in ledger]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"the registry's ledger has gaps: {seqs}")
    # The aliases must be what the ledger says (else a promotion is pending or an alias was moved by hand).
    if not problems and ledger:
        state, _ = fold_ledger([rec for _, rec, _ in ledger])
        aliases = registry.get_aliases(client, name)
        for alias in ("champion", "previous"):
            want = getattr(state, alias)
            if want is not None and aliases.get(alias) != want:
                problems.append(f"alias {alias} points to {aliases.get(alias, 'nothing')}, the ledger says {want} "
                                f"(a change is pending: any promote or `distillops audit sync` completes it; "
                                f"or the alias was moved outside distillops)")
    head = registry.get_model_tag(client, name, "audit_head")
    if head and entries and head != f"{entries[-1].get('seq')}:{entries[-1].get('hash')}" and not any(
            "not in the audit log" in p for p in problems):
        problems.append(f"the registry's audit_head {head[:20]} is not the log's last entry")
    return problems


def show(home: Home, name: str) -> list[dict]:
    return read_log(audit_path(home, name))


def rollback(client, home: Home, name: str, reason: str) -> dict:
    """Re-point `champion` to `previous` (recorded); the rolled-back version becomes `previous`."""
    state, _ = sync(client, home, name)
    if state.champion is None or state.previous is None:
        raise registry.RegistryError(f"{name}: nothing to roll back to (champion {state.champion or 'none'}, "
                                     f"previous {state.previous or 'none'})")
    record = new_record("rollback", name, state.previous, state.champion, [reason or "rollback requested"], {})
    seq, outcome, state = append_and_sync(client, home, name, record)
    return {"seq": seq, "outcome": outcome.to_dict(), "champion": state.champion, "previous": state.previous}


def record_refusal(client, home: Home, name: str, reasons: list[str], lineage: dict) -> int:
    """Record a refused promotion (gate failed); changes no alias."""
    state, _ = sync(client, home, name)
    record = new_record("refuse", name, None, state.champion, reasons, lineage)
    seq, _, _ = append_and_sync(client, home, name, record)
    return seq
