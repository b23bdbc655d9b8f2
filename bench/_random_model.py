"""A Llama-shaped model with random weights and a locally trained tokenizer, saved as a Hugging Face folder.

No Hub access is needed: the tokenizer is a byte-level BPE trained here on a few sentences (with a
ChatML chat template), the weights come from the config's random initialisation. Throughput depends
on the shapes, not on the values, so such a model measures an engine as a real one of its size would
(given `ignore_eos`, since random weights end where they like).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Tell me a short story about a lighthouse keeper and the sea.",
    "Shipyard runs serverless functions and OpenAI-compatible endpoints on your own machines.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation: , . ; ! ? ( ) [ ] { } ' \" - _ / \\ @ # $ % & *",
]


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context: int = 4096


TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=400, context=512)
# About 300M parameters: 24 layers of 1024 (grouped-query attention, 16 heads over 8 KV heads).
MEDIUM = Shape(hidden=1024, layers=24, heads=16, kv_heads=8, intermediate=2816, vocab=8000)


def build(folder: Path, shape: Shape, *, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> int:
    """Write config, safetensors weights and tokenizer into `folder`; return the parameter count."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=shape.vocab, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate, max_position_embeddings=shape.context,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())
