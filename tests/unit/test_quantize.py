"""Dynamic int8 quantization (components/distillation/quantize.py) on a tiny random BERT."""

import warnings

import pytest
import torch
from fakes import make_tiny_teacher
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from components.common.modeling import encode
from components.distillation.quantize import is_dynamic_int8, quantize_dynamic_int8


def test_linear_layers_become_dynamic_int8_and_outputs_stay_close(tmp_path):
    path = make_tiny_teacher(tmp_path / "m", hidden=64)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the legacy API's deprecation notices are silenced inside
        quantized = quantize_dynamic_int8(model)
    assert sum(is_dynamic_int8(m) for m in quantized.modules()) == linears > 0
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    assert not any(is_dynamic_int8(m) for m in model.modules())  # the fp32 model is left as it was
    batch = encode(tokenizer, ["rain and wind today", "the match score", "my bank balance"], 32)
    with torch.inference_mode():
        fp32, int8 = model(**batch).logits, quantized(**batch).logits
    assert int8.shape == fp32.shape
    assert (int8 - fp32).abs().max() < 0.05 * max(1.0, float(fp32.abs().max()))


def test_a_model_off_the_cpu_is_refused_by_name():
    model = torch.nn.Linear(2, 2).to("meta")
    with pytest.raises(ValueError, match=r"dynamic int8 runs on CPU; the model is on \['meta'\]"):
        quantize_dynamic_int8(model)
