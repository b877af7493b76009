"""A gate that fails before any student was ever registered is recorded, not a crash."""

from components.common import registry
from components.common.home import Home
from components.promote import audit


def test_refusal_on_a_registry_without_the_model(home):
    h = Home.resolve(home)
    client = registry.connect(h)
    seq = audit.record_refusal(client, h, "never-registered", ["speed-up 0.3 (required >= 2) FAILED"], {})
    assert seq >= 1
    entries = audit.show(h, "never-registered")
    assert entries[-1]["record"]["action"] == "refuse"
    assert "speed-up" in " ".join(entries[-1]["record"]["reasons"])
