"""The quickstart dataset: synthetic customer-support messages with four intents.

Generated deterministically from hand-written templates and slot values (no download, no
real customers): it exercises every step of the pipeline in minutes on a laptop CPU. It is an
easy dataset, so it demonstrates the mechanics, not distillation quality; benchmarks use real
datasets (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

INTENTS: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month",
        "why is there an extra fee of {amount} on my invoice",
        "please refund the {amount} you took from my card",
        "my {plan} plan price went up without notice",
        "can I get a receipt for the {amount} payment",
        "the invoice for {month} shows the wrong amount",
        "how do I update the credit card used for billing",
        "I cancelled but you still billed me {amount} in {month}",
    ],
    "shipping": [
        "my order {order} has not arrived yet",
        "the package was delivered to the wrong address in {city}",
        "tracking for order {order} has not updated since {month}",
        "can you ship my {item} to {city} instead",
        "the {item} arrived broken, the box was crushed",
        "how long does delivery to {city} usually take",
        "the courier left my {item} outside in the rain",
        "order {order} says delivered but nothing is here",
    ],
    "account": [
        "I cannot log in to my account since {month}",
        "how do I change the email address on my profile",
        "please delete my account and all my data",
        "I forgot my password and the reset link expired",
        "someone else may have accessed my account from {city}",
        "how can I add a second user to my {plan} account",
        "my username shows the wrong name after the update",
        "two factor codes are not reaching my phone",
    ],
    "technical": [
        "the app crashes when I open the {feature} screen",
        "{feature} is very slow since the last update",
        "I get error {code} when I try to use {feature}",
        "the {feature} button does nothing on my phone",
        "sync stopped working on my {device}",
        "the {device} app shows a blank page after login",
        "export to pdf fails with error {code}",
        "notifications stopped on my {device} after the update",
    ],
}
SLOTS: dict[str, list[str]] = {
    "plan": ["basic", "premium", "family", "business", "student"],
    "amount": ["$9.99", "$12", "$49.50", "$120", "$3.20", "$75"],
    "month": ["January", "March", "May", "July", "September", "November"],
    "order": ["#10423", "#88217", "#55120", "#73009", "#41786", "#90311"],
    "city": ["Lisbon", "Denver", "Osaka", "Nairobi", "Leeds", "Quebec"],
    "item": ["lamp", "headphones", "blender", "jacket", "monitor", "kettle"],
    "feature": ["search", "calendar", "reports", "settings", "upload", "chat"],
    "code": ["E42", "500", "403", "X-17", "timeout", "0x80"],
    "device": ["iPhone", "Android tablet", "laptop", "smart TV", "Chromebook"],
}
PREFIXES = ["", "hi, ", "hello, ", "urgent: ", "quick question: ", "help! "]
SUFFIXES = ["", " thanks", " please help", " asap", ". thank you", " :("]


def generate(rows: int = 800, seed: int = 7) -> list[dict[str, str]]:
    """`rows` labelled messages, balanced over the intents, deterministic for a seed."""
    rng = random.Random(seed)
    labels = sorted(INTENTS)
    out, seen = [], set()
    while len(out) < rows:
        label = labels[len(out) % len(labels)]
        template = rng.choice(INTENTS[label])
        text = template.format(**{k: rng.choice(v) for k, v in SLOTS.items()})
        text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
        if text in seen:
            continue
        seen.add(text)
        out.append({"text": text, "label": label})
    return out


def write_quickstart(path: str | Path, rows: int = 800, seed: int = 7) -> Path:
    """Write the dataset as JSONL (once: an existing file is kept, so its data_version is stable)."""
    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in generate(rows, seed)))
    tmp.replace(path)
    return path


if __name__ == "__main__":  # python -m pipelines.quickstart OUT.jsonl  (the dvc.yaml stage)
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/support_tickets.jsonl")
    target.unlink(missing_ok=True)
    write_quickstart(target)
