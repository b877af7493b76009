"""Signing (common/signing.py) and the gate report's binding check (promote/core.py), pure."""

import json

import pytest

from components.common import signing
from components.promote.core import binding_problems

KEY = b"k" * 32


def test_bytes_sign_and_verify():
    sig = signing.sign(b"data", KEY)
    assert sig.startswith("hmac-sha256:") and signing.verify(b"data", sig, KEY)
    assert not signing.verify(b"datA", sig, KEY)
    assert not signing.verify(b"data", sig, b"w" * 32)
    assert not signing.verify(b"data", None, KEY) and not signing.verify(b"data", sig[:-1] + "0", KEY)


def test_a_signed_report_survives_reformatting_and_nothing_else():
    report = signing.sign_report({"passed": False, "reasons": ["slow"], "context": {"model_digest": "ab", "x": 0.1}},
                                 KEY)
    reread = json.loads(json.dumps(report, indent=2))  # as the gate writes it and promote reads it
    assert signing.verify_report(reread, KEY) == []
    for edit in ({"passed": True}, {"reasons": []}, {"context": {"model_digest": "cd", "x": 0.1}}):
        assert "does not match" in signing.verify_report({**reread, **edit}, KEY)[0]
    assert "does not match" in signing.verify_report(report, b"w" * 32)[0]
    unsigned = {k: v for k, v in report.items() if k != signing.SIGNATURE_FIELD}
    assert "not signed" in signing.verify_report(unsigned, KEY)[0]
    assert signing.verify_report(unsigned, None) == []  # no key configured: nothing to check here


def test_the_key_comes_from_the_environment():
    assert signing.key_from_env({}) is None
    assert signing.key_from_env({signing.KEY_ENV: "  "}) is None
    assert signing.key_from_env({signing.KEY_ENV: "x" * 16}) == b"x" * 16
    with pytest.raises(signing.SigningKeyError, match=f"{signing.KEY_ENV} is 5 bytes"):
        signing.key_from_env({signing.KEY_ENV: "short"})


BOUND = {"model_digest": "d1", "data_version": "data1", "teacher_version": "t1", "config_hash": "c1"}


def test_binding_names_every_mismatch_with_both_values():
    assert binding_problems({"passed": True, "context": dict(BOUND)}, BOUND) == []
    problems = binding_problems({"passed": True, "context": {**BOUND, "model_digest": "d2", "config_hash": "c2"}},
                                BOUND)
    assert problems == ["model_digest: the gate report says 'd2', the student has 'd1'",
                        "config_hash: the gate report says 'c2', the student has 'c1'"]
    forged = binding_problems({"passed": True, "reasons": []}, BOUND)
    assert len(forged) == 4 and forged[0].startswith("model_digest: the gate report says none (not bound")
    assert binding_problems({"passed": "yes"}, BOUND) == ['not a gate report: it has no boolean "passed"']
