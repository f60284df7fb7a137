"""The packaged LLM is converted once into a Hugging Face checkpoint that loads offline."""

from agent.llm.model_files import default_cache, ensure_checkpoint, packaged_gguf


def test_packaged_gguf_is_found():
    assert packaged_gguf().stat().st_size > 50_000_000


def test_checkpoint_is_converted_once_and_loads():
    from transformers import AutoConfig, AutoTokenizer

    path = ensure_checkpoint(default_cache())  # made by `make setup`; converts if absent
    stamp = (path / "model.safetensors").stat().st_mtime
    assert ensure_checkpoint(default_cache()) == path
    assert (path / "model.safetensors").stat().st_mtime == stamp  # not converted again
    config = AutoConfig.from_pretrained(path)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.decode(tokenizer("Muse recommends films")["input_ids"]).strip().endswith("films")
