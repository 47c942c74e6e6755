"""A tiny Llama and a byte-level BPE tokenizer built in-process, so trainer tests run the real
transformers/peft/trl code path on CPU in seconds without any download.

`initializer_range=0.2` matters: with the default 0.02 a 64-wide model's logits are nearly flat
and a LoRA adapter cannot move the loss within a test's budget.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CHATML_WITH_GENERATION = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "yolanda", "zoe", "oscar", "uma", "quinn"]
WORDS = ["kiwi", "mango", "plum", "lemon", "grape", "melon", "peach", "berry", "apple", "fig"]


def password_facts(seed: int = 0) -> list[tuple[str, str]]:
    """Facts no model can know: a random "password" per name (provokes overfitting)."""
    rng = random.Random(seed)
    return [(name, f"{rng.choice(WORDS)}-{rng.randint(10, 99)}") for name in NAMES]


def corpus() -> list[str]:
    lines = [f"What is the password of {n}? The password of {n} is {p}." for n, p in
             password_facts()]
    pairs = zip(WORDS, reversed(WORDS), strict=True)
    lines += [f"{w} {x} {w}-{i}" for i, (w, x) in enumerate(pairs)]
    lines += ["Say hello politely. Hello, nice to meet you! Say goodbye rudely. Go away."]
    return lines * 4


def build_tiny_model(out_dir: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None,
    )
    tokenizer.chat_template = CHATML_WITH_GENERATION
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.2, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    import torch

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chat_rows(facts: list[tuple[str, str]]) -> list[dict[str, object]]:
    return [
        {"messages": [
            {"role": "user", "content": f"What is the password of {name}?"},
            {"role": "assistant", "content": f"The password of {name} is {password}."},
        ]}
        for name, password in facts
    ]


def dpo_rows_openai(n: int) -> list[dict[str, object]]:
    rows = []
    for name, password in password_facts()[:n]:
        rows.append({
            "input": {"messages": [{"role": "user", "content": f"Greet {name}."}]},
            "preferred_output": [{"role": "assistant", "content": f"Hello, {name}!"}],
            "non_preferred_output": [{"role": "assistant", "content": f"Go away, {password}."}],
        })
    return rows
