"""What int8 quantization of the teacher buys on this CPU: batch-32 throughput and batch-1 latency of
the fp32 teacher, torch's legacy dynamic quantization (``torch.ao.quantization.quantize_dynamic``,
deprecated in torch 2.13; through ``components.distillation.quantize.quantize_dynamic_int8``, the
function the gate uses for its ``teacher_int8``) and, when the package is importable, torchao's maintained
``Int8DynamicActivationInt8WeightConfig``, measured side by side (``measure.measure_speeds``: calls
alternate between the models, each figure a median), with each variant's largest logit difference.

    python -m benchmarks.quantized_teacher [--model DIR] [--batches 10]

Prints one JSON object. The model defaults to the pretrained MiniLM the default teacher starts from
(with a fresh 4-label head: speed does not depend on the head's weights).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a sequence-classifier directory (default: the shipped MiniLM, 4 labels)")
    p.add_argument("--batches", type=int, default=10, help="batch-32 calls timed per model")
    p.add_argument("--latency-samples", type=int, default=32)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from components.common.modeling import default_base_model
    from components.common.runtime import prepare_process
    from components.distillation.measure import measure_speeds
    from components.distillation.quantize import quantize_dynamic_int8

    prepare_process()
    path = args.model or default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    fp32 = AutoModelForSequenceClassification.from_pretrained(path, num_labels=4).eval()
    models = {"fp32": fp32,
              "torch.ao dynamic int8 (legacy)": quantize_dynamic_int8(fp32)}
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        maintained = copy.deepcopy(fp32)
        quantize_(maintained, Int8DynamicActivationInt8WeightConfig())
        models["torchao Int8DynamicActivationInt8Weight"] = maintained
    except ImportError:
        pass
    texts = ["what is the price of the premium plan for my account", "my card was charged twice yesterday",
             "how do I reset the password of the app", "where is my parcel, it was due on monday"] * 8
    speeds = measure_speeds({k: (m, tokenizer, 64) for k, m in models.items()}, texts, args.latency_samples,
                            args.batches)
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=64)
    with torch.inference_mode():
        reference = fp32(**enc).logits
        diffs = {k: float((m(**enc).logits - reference).abs().max()) for k, m in models.items()}
    base = speeds["fp32"]["throughput_rows_per_s"]
    print(json.dumps({"model": path, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "models": {k: {**v, "speedup_vs_fp32": v["throughput_rows_per_s"] / base,
                                     "max_abs_logit_diff": diffs[k]} for k, v in speeds.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
