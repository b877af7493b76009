"""The quickstart dataset: synthetic customer-support messages with four intents, and a sample
production batch that has drifted away from it (to try `distillops monitor` on).

Generated deterministically from hand-written templates and slot values (no download, no
real customers): it exercises every step of the pipeline in minutes on a laptop CPU. It is an
easy dataset, so it demonstrates the mechanics, not distillation quality; benchmarks use real
datasets (see docs/benchmarks.md).

    python -m pipelines.quickstart data/support_tickets.jsonl [--production-batch data/production_batch.jsonl]
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


# The production batch: what traffic looks like months after the training data was collected. A new
# product (a wallet, an in-app assistant, a smart-home hub) brings requests the templates above never
# saw, written longer and more excitedly, and the mix shifts to technical trouble. No labels: production
# inputs arrive unlabelled.
SHIFTED_TEMPLATES: list[tuple[str, str]] = [
    ("technical", "the new {product} keeps disconnecting every few minutes since firmware {version}"),
    ("technical", "after pairing the {product} with my {device} the AI assistant answers in the wrong language"),
    ("technical", "{product} voice commands stopped working!!! tried resetting it {count} times already"),
    ("technical", "the assistant inside the app hallucinates order numbers when I ask about my {product}"),
    ("technical", "firmware {version} bricked my {product}, the LED just blinks orange"),
    ("technical", "QR code login for the {product} companion app loops back to the scan screen"),
    ("technical", "my {product} reports {count}% battery but dies within an hour"),
    ("billing", "the crypto wallet top-up of {crypto} never showed up in my balance"),
    ("billing", "why does the {product} bundle charge a monthly cloud fee on top of the device price"),
    ("account", "the {product} setup wizard wants a business tax id for my personal account"),
    ("shipping", "the {product} preorder from the launch event has no tracking number after {count} weeks"),
]
SHIFTED_SLOTS: dict[str, list[str]] = {
    "product": ["HomeHub Mini", "PulseBand 2", "AirDock Pro", "smart doorbell", "Wallet+ card", "VisionCam"],
    "version": ["4.2.1", "5.0-beta", "3.9.7", "6.1", "2026.11"],
    "count": ["3", "5", "12", "20", "40"],
    "crypto": ["0.05 ETH", "120 USDC", "0.002 BTC", "80 DAI"],
    "device": ["Pixel 9", "Galaxy watch", "car display", "Apple TV", "Steam Deck"],
}
SHIFTED_PREFIXES = ["", "URGENT!!! ", "hey support team, ", "Day 3 of waiting: ", "[ticket reopened] ", "ok so "]
SHIFTED_SUFFIXES = ["", " - this is unacceptable for a premium product", " #fail", " 😡😡", " (sent from my HomeHub)",
                    ". I have attached screenshots, logs and the serial number below, please escalate."]


def generate_production(rows: int = 300, seed: int = 11) -> list[dict[str, str]]:
    """`rows` unlabelled production inputs that drifted from `generate`'s data: new products,
    vocabulary and tone, longer messages, mostly technical trouble. Deterministic for a seed."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < rows:
        _, template = rng.choice(SHIFTED_TEMPLATES)
        text = template.format(**{k: rng.choice(v) for k, v in SHIFTED_SLOTS.items()})
        text = rng.choice(SHIFTED_PREFIXES) + text + rng.choice(SHIFTED_SUFFIXES)
        if text in seen:
            continue
        seen.add(text)
        out.append({"text": text})
    return out


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


def _write_once(path: str | Path, rows: list[dict[str, str]]) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def write_quickstart(path: str | Path, rows: int = 800, seed: int = 7) -> Path:
    """Write the dataset as JSONL (once: an existing file is kept, so its data_version is stable)."""
    return _write_once(path, generate(rows, seed))


def write_production_batch(path: str | Path, rows: int = 300, seed: int = 11) -> Path:
    """Write the sample production batch as JSONL (once, like the dataset)."""
    return _write_once(path, generate_production(rows, seed))


def main(argv: list[str] | None = None) -> int:
    """Regenerate the files (the dvc.yaml stage): existing ones are replaced."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default="data/support_tickets.jsonl", help="the labelled dataset")
    parser.add_argument("--production-batch", metavar="FILE", help="also write the drifted, unlabelled batch here")
    args = parser.parse_args(argv)
    for target, write in ((args.out, write_quickstart), (args.production_batch, write_production_batch)):
        if target:
            Path(target).unlink(missing_ok=True)
            write(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
