"""benchmarks/drift_replay.py's pure parts: the batch stream and the summary's verdicts."""

import pytest

from benchmarks.drift_replay import batches, summarize


def test_batches_are_disjoint_and_switch_shift_at_the_given_batch():
    first, second = [f"a{i}" for i in range(50)], [f"b{i}" for i in range(50)]
    out = batches(first, second, n_batches=5, rows=10, second_at=4)
    assert [b[0][0] for b in out] == ["a", "a", "a", "b", "b"]
    flat = [t for b in out for t in b]
    assert len(flat) == len(set(flat)) == 50
    assert out == batches(first, second, 5, 10, 4)  # seeded
    with pytest.raises(SystemExit, match="not enough texts for 6 batches of 10 rows"):
        batches(first, second, n_batches=6, rows=10, second_at=7)


def _row(i, shift, redistilled, after):
    return {"batch": i, "shift": shift, "redistilled": redistilled, "action": "redistill" if redistilled else "none",
            "disagreement_after": after, "disagreement_reference": 0.05, "disagreement_threshold": 0.10,
            "seconds": 1.0}


def test_summary_says_whether_each_shift_settled():
    rows = [_row(1, "first", True, 0.10), _row(2, "first", False, 0.08), _row(3, "first", False, 0.09),
            _row(4, "second", True, 0.12)]
    out = summarize(rows, "new")
    assert out["redistills"] == 2 and out["first"]["redistills"] == 1
    assert out["first_shift_settled"] is True and out["second_shift_redistilled"] is True
    storm = [_row(i, "first", True, 0.30) for i in range(1, 4)]
    out = summarize(storm, "legacy")
    assert out["first_shift_settled"] is False and out["first"]["under_threshold"] is False
    assert "second" not in out and "second_shift_redistilled" not in out
