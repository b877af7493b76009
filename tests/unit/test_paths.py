"""Names that become paths (RELIABILITY items 27): one validator, `components.common.paths`."""

import pytest

from components.common.paths import UnsafeNameError, safe_name, safe_relpath, within

BAD_NAMES = ["../../x", "..", "../etc/passwd", "/etc/passwd", "..\\..\\x", "a\\b", "%2e%2e", "%2e%2e%2fx",
             "x#frag", "x\x00y", "", "a" * 129, "a/b", ".hidden", " x", "x\n", "C:\\x", "~root"]


@pytest.mark.parametrize("value", BAD_NAMES)
def test_unsafe_names_are_refused_with_the_value_and_what_is_allowed(value):
    with pytest.raises(UnsafeNameError) as err:
        safe_name(value, "model name")
    message = str(err.value)
    assert f"model name {value[:80]!r}" in message
    assert "allowed: 1-128 characters: letters, digits" in message


@pytest.mark.parametrize("value", ["distillops-student", "teacher_v2", "a.b+c", "A1", "x" * 128])
def test_ordinary_names_pass(value):
    assert safe_name(value) == value


@pytest.mark.parametrize("value", ["gate/report.md", "drift/verdict.json", "teacher/learning_rate_sweep.json"])
def test_relative_artifact_paths_pass(value):
    assert safe_relpath(value) == value


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd", "gate/../../x", "gate\\..\\x", "%2e%2e/x",
                                   "gate/report.md#frag", "gate/\x00", "", "gate//x", "a/" * 40 + "x"])
def test_unsafe_artifact_paths_are_refused(value):
    with pytest.raises(UnsafeNameError):
        safe_relpath(value, "artifact path")


def test_within_resolves_symlinks(tmp_path):
    root = tmp_path / "home"
    (root / "audit").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    assert within(root, root / "audit" / "m.jsonl") == (root / "audit" / "m.jsonl").resolve()
    (root / "audit" / "link").symlink_to(outside)
    with pytest.raises(UnsafeNameError, match="outside"):
        within(root, root / "audit" / "link" / "m.jsonl")
    with pytest.raises(UnsafeNameError, match="outside"):
        within(root, root / ".." / "outside")
