"""The promotion ledger fold (compare-and-set by order) and the audit hash chain (pure logic)."""

import copy

from components.promote.core import chain_entries, compare_with_mirror, fold_ledger, verify_chain


def promote(version, expected):
    return {"action": "promote", "version": version, "expected_champion": expected}


def test_fold_applies_only_the_first_of_racing_claims():
    records = [promote("1", "none"), promote("2", "1"), promote("3", "1"), promote("4", "1"), promote("5", "2")]
    state, outcomes = fold_ledger(records)
    assert [o.status for o in outcomes] == ["applied", "applied", "rejected", "rejected", "applied"]
    assert (state.champion, state.previous) == ("5", "2")
    assert "champion is 2, not 1" in outcomes[2].why


def test_rollback_and_refusal():
    records = [promote("1", None), promote("2", "1"), {"action": "refuse", "expected_champion": "2"},
               {"action": "rollback", "version": "1", "expected_champion": "2"},
               {"action": "rollback", "version": "2", "expected_champion": "1"}]
    state, outcomes = fold_ledger(records)
    assert [o.status for o in outcomes] == ["applied", "applied", "recorded", "applied", "applied"]
    assert (state.champion, state.previous) == ("2", "1")  # a second rollback undoes the first
    _, outcomes = fold_ledger([promote("1", None), {"action": "rollback", "version": None,
                                                    "expected_champion": "1"}])
    assert outcomes[1].status == "rejected" and "no previous champion" in outcomes[1].why


def _entries():
    records = [(i + 1, r) for i, r in enumerate([promote("1", None), promote("2", "1"), promote("3", "1")])]
    _, outcomes = fold_ledger([r for _, r in records])
    return records, chain_entries(records, outcomes)


def test_chain_detects_edits_deletions_and_reordering():
    records, entries = _entries()
    assert verify_chain(entries) == []
    edited = copy.deepcopy(entries)
    edited[1]["record"]["version"] = "7"
    assert any("was edited" in p for p in verify_chain(edited))
    assert any("deleted" in p for p in verify_chain(entries[:1] + entries[2:]))
    assert verify_chain(list(reversed(entries))) != []
    outcome_edit = copy.deepcopy(entries)
    outcome_edit[2]["outcome"]["status"] = "applied"
    assert verify_chain(outcome_edit) != []


def test_mirror_comparison():
    records, entries = _entries()
    mirror = [(seq, rec, {"audit_hash": e["hash"]}) for (seq, rec), e in zip(records, entries, strict=True)]
    assert compare_with_mirror(entries, mirror) == []
    assert any("it was deleted" in p for p in compare_with_mirror(entries[:2], mirror))
    assert any("deleted there" in p for p in compare_with_mirror(entries, mirror[:2]))
    forged = [(s, {**r, "version": "9"} if s == 2 else r, t) for s, r, t in mirror]
    assert any("differs from the registry" in p for p in compare_with_mirror(entries, forged))


def test_adopting_aliases_found_before_the_ledger():
    adopt = {"action": "adopt", "version": "4", "previous": "3"}
    state, outcomes = fold_ledger([adopt, adopt, promote("5", "4")])
    assert [o.status for o in outcomes] == ["applied", "rejected", "applied"]
    assert (state.champion, state.previous) == ("5", "4")
