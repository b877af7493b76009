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
from pathlib import Path

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


# A dynamic-int8 classifier on disk: config.json and the tokenizer as the fp32 model's, and one
# safetensors file (no pickle: the registry accepts safetensors weights only) holding every
# quantized linear layer as its int8 values, scale and zero point, beside the fp32 rest.
INT8_WEIGHTS = "model_int8.safetensors"
INT8_META = "quantization.json"
INT8_SCHEME = "dynamic_int8_linear"
_FP32_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def int8_tensors(quantized: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state of a `quantize_dynamic_int8` model as plain tensors: `<layer>.weight.int8` /
    `.weight.scale` / `.weight.zero_point` / `.bias` per quantized linear layer, the rest as is."""
    tensors, linear = {}, []
    for name, module in quantized.named_modules():
        if not is_dynamic_int8(module):
            continue
        weight, bias = module._weight_bias()
        if weight.qscheme() != torch.per_tensor_affine:
            raise ValueError(f"{name}: int8 weights quantized {weight.qscheme()}; only per-tensor is saved")
        tensors[f"{name}.weight.int8"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight.scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        tensors[f"{name}.weight.zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().clone().contiguous()
        linear.append(name + ".")
    for key, value in quantized.state_dict().items():
        if not key.startswith(tuple(linear)) and isinstance(value, torch.Tensor):
            tensors[key] = value.detach().clone().contiguous()
    return tensors


def save_int8_classifier(model_dir: str | Path, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write the classifier saved in `model_dir`, quantized to dynamic int8, as a new directory
    `out_dir` (created whole beside itself and renamed into place: never half-written): its config,
    tokenizer and other files, `model_int8.safetensors` instead of the fp32 weights, and
    `quantization.json` (the scheme, the torch version and `meta`). Returns `out_dir`."""
    import json
    import shutil

    from safetensors.torch import save_file

    from components.common.io import atomic_dir
    from components.common.modeling import load_classifier

    src, out = Path(model_dir), Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; not overwriting an int8 model")
    model, _ = load_classifier(src)
    tensors = int8_tensors(quantize_dynamic_int8(model))
    with atomic_dir(out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name not in _FP32_WEIGHTS:
                shutil.copyfile(f, tmp / f.name)
        save_file(tensors, str(tmp / INT8_WEIGHTS), metadata={"format": "pt", "scheme": INT8_SCHEME})
        (tmp / INT8_META).write_text(json.dumps({"scheme": INT8_SCHEME, "torch": torch.__version__,
                                                 "weights": INT8_WEIGHTS, **(meta or {})}, indent=2) + "\n")
    return out


def load_int8_classifier(path: str | Path):
    """(model, tokenizer) of a directory `save_int8_classifier` wrote: the dynamic int8 model, in
    eval mode, on CPU. A directory without its int8 weights, or whose weights do not fit its config,
    is a ValueError naming the file and the first mismatching keys."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from components.common.modeling import check_model_dir

    path = Path(path)
    weights = path / INT8_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{path}: no {INT8_WEIGHTS}; not an int8 model directory (save_int8_classifier writes one)")
    check_model_dir(path)  # config.json present, no remote code
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model = quantize_dynamic_int8(AutoModelForSequenceClassification.from_config(config))
    tensors = load_file(str(weights))
    linear = []
    for name, module in model.named_modules():
        if not is_dynamic_int8(module):
            continue
        try:
            int8 = tensors.pop(f"{name}.weight.int8")
            scale = float(tensors.pop(f"{name}.weight.scale")[0])
            zero_point = int(tensors.pop(f"{name}.weight.zero_point")[0])
        except KeyError as exc:
            raise ValueError(f"{weights}: missing {exc.args[0]} for the quantized layer {name}") from None
        expected = module._weight_bias()[0].shape
        if int8.shape != expected:
            raise ValueError(f"{weights}: {name}.weight.int8 has shape {tuple(int8.shape)}, the config's layer "
                             f"{tuple(expected)}")
        module.set_weight_bias(torch._make_per_tensor_quantized_tensor(int8, scale, zero_point),
                               tensors.pop(f"{name}.bias", None))
        linear.append(name + ".")
    # The rest (embeddings, layer norms, buffers), copied in place: the quantized layers' own
    # state loading would ask for keys (output scale, packed parameters) that the file does not keep.
    own = {k: v for k, v in model.state_dict(keep_vars=True).items()
           if not k.startswith(tuple(linear)) and isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = [k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{weights}: does not fit {path / 'config.json'}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shape {sorted(wrong)[:5]}")
    with torch.no_grad():
        for key, target in own.items():
            target.copy_(tensors[key])
    return model.eval(), AutoTokenizer.from_pretrained(path, trust_remote_code=False)
