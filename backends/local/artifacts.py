"""What a finished run leaves behind besides the adapter: a memorization probe, a merged model.

The probe is the seed's second overfitting signal ("model memorizes training examples
verbatim") made measurable: greedy generation on a few training prompts, and the share whose
output starts with the training answer word for word. It is kept tiny (a handful of prompts,
answer-length generations) so it costs seconds, not minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def _encode_prompt(tokenizer: Any, prompt: Any) -> dict[str, torch.Tensor]:
    if isinstance(prompt, list):
        encoded = tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt",
        )
    else:
        encoded = tokenizer(prompt, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def _normalise(text: str) -> str:
    return " ".join(text.split())


@torch.no_grad()
def memorization_probe(
    model: Any, tokenizer: Any, pairs: list[tuple[Any, str]], max_new_tokens: int = 64
) -> dict[str, Any]:
    """Verbatim-match rate of greedy generations against the training answers."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    matches = 0
    for prompt, expected in pairs:
        inputs = {k: v.to(device) for k, v in _encode_prompt(tokenizer, prompt).items()}
        budget = len(tokenizer(expected, add_special_tokens=False)["input_ids"]) + 2
        output = model.generate(
            **inputs, max_new_tokens=min(budget, max_new_tokens), do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        generated = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:],
                                     skip_special_tokens=True)
        if expected.strip() and _normalise(generated).startswith(_normalise(expected)):
            matches += 1
    if was_training:
        model.train()
    rate = matches / len(pairs) if pairs else None
    return {"sampled": len(pairs), "verbatim": matches, "verbatim_rate": rate}


def merge_adapter(base_location: str, adapter_dir: Path, out: Path) -> Path:
    """Base weights + adapter folded into one model directory (base reloaded unquantized)."""
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_location, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(out))
    return out
