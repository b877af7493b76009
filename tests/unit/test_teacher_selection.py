"""The teacher step picks its learning rate by validation and refuses a teacher no better than the
majority label."""

from types import SimpleNamespace

import pytest

from components.common.dataset import Snapshot
from components.teacher.runner import TeacherRefused, check_better_than_majority, majority_accuracy


def snapshot(n_major: int, n_minor: int) -> Snapshot:
    texts, labels, splits = [], [], []
    for split in ("train", "validation", "test"):
        for i in range(n_major + n_minor):
            texts.append(f"{split} {i}")
            labels.append("a" if i < n_major else "b")
            splits.append(split)
    return Snapshot(texts, labels, splits)


def test_majority_accuracy():
    assert majority_accuracy(["a", "a", "a", "b"]) == 0.75
    assert majority_accuracy([]) == 0.0


def test_a_teacher_no_better_than_the_majority_label_is_refused():
    snap = snapshot(8, 2)  # majority label: 0.8 of every split
    with pytest.raises(TeacherRefused, match=r"no better than always predicting the majority label \(validation "
                                             r"0.8000 vs 0.8000, test 0.7000 vs 0.8000\); nothing was registered"):
        check_better_than_majority(snap, SimpleNamespace(best_validation_accuracy=0.8), 0.7)
    floors = check_better_than_majority(snap, SimpleNamespace(best_validation_accuracy=0.9), 0.85)
    assert floors == {"majority_validation_accuracy": 0.8, "majority_test_accuracy": 0.8}
