from fakes import make_tiny_teacher


def test_the_fake_tokenizer_knows_its_words(tmp_path):
    """Pins the fix: BertTokenizerFast(vocab_file=...) made every word [UNK] under transformers 5."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_tiny_teacher(tmp_path / "m", layers=1, hidden=16))
    ids = tokenizer("goal rain 12")["input_ids"]
    assert tokenizer.unk_token_id not in ids and len(set(ids)) == len(ids)
