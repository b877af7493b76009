"""Pure logic of version_data beyond what common/dataset.py shares (reading, validating and
splitting rows is there, because watch and the teacher step build the same snapshot)."""

from __future__ import annotations

from components.common.dataset import Snapshot


def split_counts(snapshot: Snapshot) -> dict[str, int]:
    return {s: snapshot.splits.count(s) for s in ("train", "validation", "test")}


def input_summary(report: dict) -> str:
    """One line of what the input policies did and the duplicates found (build_snapshot_with_report)."""
    overlap, conflicts = report["overlap"], report["conflicting_labels"]
    return (f"{report['truncated_rows']} text(s) cut to {report['max_text_chars']} characters; "
            f"{conflicts['texts']} conflicting-label text(s) ({conflicts['policy']}, {conflicts['rows_dropped']} "
            f"row(s) dropped); across splits {overlap['exact_across_splits']} exact and "
            f"{overlap['normalised_across_splits']} normalised duplicate(s); within splits "
            f"{overlap['exact_duplicates_within_splits']} exact and "
            f"{overlap['normalised_duplicates_within_splits']} normalised; label sources "
            f"{', '.join(f'{k} {v}' for k, v in sorted(report.get('label_sources', {}).items())) or 'none'}")
