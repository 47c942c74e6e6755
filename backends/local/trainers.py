"""trl trainer construction for SFT and DPO from resolved hyperparameters (trainer process only).

One place maps the product's hyperparameter names onto trl's configs, and fixes the settings the
product relies on: a log record every step (live curves), evaluation and checkpointing on the same
cadence (so the best checkpoint is always a saved one), and CPU-safe precision.

`batch_size` is the job's global batch (examples per optimizer step, as OpenAI means it), so a
data-parallel job gives each of its N processes batch_size / N examples (rounded up), and the
same hyperparameters take the same number of steps on one process or on N.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
from trl.chat_template_utils import has_generation_markers

from backends.local.data import Prepared
from backends.local.engine import CPU_LORA, UNSLOTH
from backends.local.hyperparams import default_eval_steps, planned_steps
from backends.local.modeling import LoadedModel
from backends.local.runs import RunDir


def template_marks_generation(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str | dict) and has_generation_markers(template)


def per_device_batch(batch_size: int, world_size: int) -> int:
    return max(1, -(-int(batch_size) // max(1, world_size)))


def common_args(
    hp: dict[str, Any], path: str, run: RunDir, n_train: int, has_eval: bool,
    options: dict[str, Any], world_size: int = 1,
) -> dict[str, Any]:
    """TrainingArguments shared by both methods."""
    eval_steps = hp["eval_steps"] or default_eval_steps(planned_steps(n_train, hp))
    on_cpu = path == CPU_LORA
    checkpointing = bool(options.get("gradient_checkpointing", not on_cpu)) and path != UNSLOTH
    batch = per_device_batch(hp["batch_size"], world_size)
    args: dict[str, Any] = {
        "output_dir": str(run.output_dir),
        "num_train_epochs": hp["n_epochs"],
        "max_steps": hp["max_steps"] or -1,
        "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": batch,
        "gradient_accumulation_steps": hp["gradient_accumulation_steps"],
        "learning_rate": hp["learning_rate"],
        "warmup_steps": hp["warmup_ratio"],  # a float < 1 is a ratio of total steps
        "lr_scheduler_type": hp["lr_scheduler_type"],
        "weight_decay": hp["weight_decay"],
        "seed": hp["seed"],
        "data_seed": hp["seed"],
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "bf16": not on_cpu,
        "use_cpu": on_cpu,
        "gradient_checkpointing": checkpointing,
        "max_length": hp["max_seq_length"],
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "save_only_model": True,
    }
    if world_size > 1:
        # Every LoRA weight takes part in every step: DDP need not search for unused ones (and
        # that search breaks gradient checkpointing).
        args.update(ddp_backend="gloo" if on_cpu else "nccl", ddp_find_unused_parameters=False)
    if has_eval:
        args.update(
            eval_strategy="steps", eval_steps=eval_steps, save_strategy="steps",
            save_steps=eval_steps, save_total_limit=2, load_best_model_at_end=True,
            metric_for_best_model="eval_loss", greater_is_better=False,
        )
    else:
        args.update(eval_strategy="no", save_strategy="no")
    return args


def build_trainer(
    method: str,
    loaded: LoadedModel,
    train: Prepared,
    evaluation: Prepared | None,
    hp: dict[str, Any],
    run: RunDir,
    options: dict[str, Any],
    callbacks: list[TrainerCallback],
    world_size: int = 1,
) -> SFTTrainer | DPOTrainer:
    args = common_args(hp, loaded.path, run, len(train.rows), evaluation is not None, options,
                       world_size)
    callbacks = list(callbacks)
    if evaluation is not None and hp.get("early_stopping_patience"):
        callbacks.append(EarlyStoppingCallback(int(hp["early_stopping_patience"])))
    eval_dataset = Dataset.from_list(evaluation.rows) if evaluation is not None else None
    common: dict[str, Any] = {
        "model": loaded.model,
        "train_dataset": Dataset.from_list(train.rows),
        "eval_dataset": eval_dataset,
        "processing_class": loaded.tokenizer,
        "peft_config": loaded.peft_config,
        "callbacks": callbacks,
    }
    if method == "dpo":
        return DPOTrainer(args=DPOConfig(beta=hp["beta"], **args), **common)
    sft_args = SFTConfig(assistant_only_loss=train.loss_mask == "assistant_only", **args)
    return SFTTrainer(args=sft_args, **common)
