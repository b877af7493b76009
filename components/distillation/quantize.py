"""Dynamic int8 quantization for CPU inference: what a user gets for free, with no training.

The gate measures the teacher (and optionally the student) quantized this way beside the fp32
models, so the student's speed-up over the int8 teacher is on every report.

Why the legacy ``torch.ao`` API: torch 2.13 warns that ``torch.ao.quantization.quantize_dynamic``
is deprecated in favour of torchao's ``quantize_``, but torchao's maintained
``Int8DynamicActivationInt8WeightConfig`` was *slower* than fp32 on this CPU (0.49× the fp32
teacher's batch-32 throughput, torchao 0.18), while the legacy dynamic int8 path was 1.93× faster
with a largest logit difference of 0.014 (``python -m benchmarks.quantized_teacher``, MiniLM,
docs/benchmarks.md "Quantized teacher"). So the path that speeds up CPU inference here is the
legacy one; its deprecation warnings are silenced here and only here, and torchao is not a
dependency. Swap this one function when the maintained path is faster on CPU.
"""

from __future__ import annotations

import copy
import warnings

import torch


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose ``nn.Linear`` layers are dynamic int8 (weights int8 per tensor,
    activations quantized per batch at run time), in eval mode; `model` itself is left unchanged.

    CPU only (the quantized kernels are fbgemm / x86 / qnnpack). Embeddings and layer norms stay fp32.
    """
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"quantize_dynamic_int8: dynamic int8 runs on CPU; the model is on {sorted(devices)}")
    with warnings.catch_warnings():
        # Only the deprecation notices of the legacy API (see the module docstring for why it is used).
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.* are deprecated",
                                category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def is_dynamic_int8(module: torch.nn.Module) -> bool:
    """Whether `module` is a dynamic int8 linear layer (as `quantize_dynamic_int8` makes them)."""
    return isinstance(module, torch.ao.nn.quantized.dynamic.Linear)
