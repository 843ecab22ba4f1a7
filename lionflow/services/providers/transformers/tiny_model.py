"""Build a tiny random-weight Llama model on disk, with no download.

It is what `make demo` falls back to when no real model is cached, and what the tests run the real
loading and generation code on. Its text is random: it has never been trained. The tokenizer is a
byte-level BPE trained with `tokenizers` on a small built-in corpus, so any text can be encoded.

    python -m lionflow.services.providers.transformers.tiny_model /tmp/tiny-llama
"""

from __future__ import annotations

import sys
from pathlib import Path

# A minimal chat template, so the tiny model exercises the chat-template path like a real one.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Lions rest for most of the day and hunt at night.",
    "Streaming sends each piece of text as soon as it is ready.",
    '{"name": "bilbo baggins", "age": 111, "tags": ["hobbit", "burglar"], "ok": true}',
    "A robot named ARU-7 found a brush and learned to paint the sea.",
    "Ünïcödé text, emoji 🦁 and numbers 0123456789 belong in the vocabulary too.",
]


def build_tiny_model(
    path: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tokenizer and a random-weight `layers`-layer Llama to `path`; return the path.

    Load it like any local model: ``iModel(provider="transformers", model=str(path))``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if chat_template:
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(target)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(target)
    return target


if __name__ == "__main__":
    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama"))
