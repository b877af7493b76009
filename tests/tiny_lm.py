"""A tiny random Llama with a word-level tokenizer and a chat template, saved like any causal LM
(the tests' stand-in for SmolLM2: same architecture family, same files, a few kB)."""

from __future__ import annotations

from pathlib import Path

WORDS = ("hello world my card was declined please help the account is locked reset password refund order "
         "late where is it thanks a lot what can you do for me today yes no maybe").split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIALS + WORDS))}  # ids 0..n-1, no gaps
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_llama(path: str | Path, seed: int = 0, layers: int = 4, hidden: int = 32) -> Path:
    """Save a random tiny LlamaForCausalLM + tokenizer at `path`; returns the path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    # Make EOS likely enough that some rows stop before max_new_tokens.
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.eos_token_id] *= 4
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
