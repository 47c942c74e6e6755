"""Loading the base model for the chosen path (trainer process only: imports torch).

CUDA: QLoRA as the seed recommends (4-bit nf4, double quantization, bf16 compute, k-bit
preparation with gradient checkpointing), through Unsloth's FastLanguageModel when installed.
CPU: the model in float32 with a plain LoRA adapter; 4-bit has no speed benefit there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from backends.local.engine import CPU_LORA, QLORA, TARGET_MODULES, UNSLOTH


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    peft_config: LoraConfig | None  # None when the adapter is already attached (Unsloth)
    path: str
    device: str


def lora_config(hp: dict[str, Any]) -> LoraConfig:
    return LoraConfig(
        r=int(hp["lora_r"]),
        lora_alpha=int(hp["lora_alpha"]),
        lora_dropout=float(hp["lora_dropout"]),
        target_modules=list(TARGET_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load(location: str, path: str, hp: dict[str, Any], local_rank: int = 0) -> LoadedModel:
    """`local_rank` is this process's GPU in a data-parallel job (its index among the visible
    devices); each rank holds a whole quantized copy of the model on its own GPU."""
    if path == UNSLOTH:
        return _load_unsloth(location, hp)
    tokenizer = AutoTokenizer.from_pretrained(location)
    _ensure_pad_token(tokenizer)
    if path == QLORA:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            location, quantization_config=quant, dtype=torch.bfloat16,
            device_map={"": local_rank},
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        return LoadedModel(model, tokenizer, lora_config(hp), QLORA, f"cuda:{local_rank}")
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    return LoadedModel(model, tokenizer, lora_config(hp), CPU_LORA, "cpu")


def _load_unsloth(location: str, hp: dict[str, Any]) -> LoadedModel:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=location, max_seq_length=int(hp["max_seq_length"]), load_in_4bit=True
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=int(hp["lora_r"]),
        target_modules=list(TARGET_MODULES),
        lora_alpha=int(hp["lora_alpha"]),
        lora_dropout=float(hp["lora_dropout"]),
        use_gradient_checkpointing="unsloth",
        random_state=int(hp["seed"]),
    )
    _ensure_pad_token(tokenizer)
    return LoadedModel(model, tokenizer, None, UNSLOTH, "cuda:0")


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())
