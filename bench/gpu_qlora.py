"""QLoRA on CUDA: tunebridge's trainer path against plain trl + peft + bitsandbytes.

Runs only on a machine with a CUDA GPU (the lent `device` machine); on CPU it says so and exits 2.
No model hub is reachable there either, so the base model is a randomly initialised Llama with
the exact shape of SmolLM2 (135M or 1.7B) and SmolLM2's real tokenizer: speed and memory depend
on shape, not on weight values. Both sides train the same rows, with the same hyperparameters,
sequence length and batch; every example is longer than the sequence length, so each step
processes exactly batch x seq_len tokens and tokens/s = steps x batch x seq_len / train_runtime.

    python bench/gpu_qlora.py --tokenizer-dir DIR --shape 1.7b --steps 30 --out OUTDIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHAPES: dict[str, dict[str, Any]] = {
    "135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
             "num_attention_heads": 9, "num_key_value_heads": 3, "rope_theta": 100000.0},
    "1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
             "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 130000.0},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")


def build_model(shape: str, tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if (out / "config.json").exists():
        return out
    config = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    del model
    torch.cuda.empty_cache()
    return out


def write_dataset(path: Path, examples: int) -> Path:
    """Chat rows whose answers are far longer than any sequence length we bench."""
    words = ["the", "adapter", "learns", "a", "short", "answer", "style", "from", "careful",
             "examples", "and", "keeps", "it"]
    with path.open("w") as fh:
        for i in range(examples):
            answer = " ".join(words[(i + j) % len(words)] for j in range(1200))
            row = {"messages": [{"role": "user", "content": f"Question {i}: explain step {i}."},
                                {"role": "assistant", "content": answer}]}
            fh.write(json.dumps(row) + "\n")
    return path


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_steps": args.steps, "batch_size": args.batch, "max_seq_length": args.seq_len,
            "learning_rate": 2e-4, "warmup_ratio": 0.03, "weight_decay": 0.01, "lora_r": 16,
            "lora_alpha": 16, "lora_dropout": 0.0, "seed": 42}


def run_ours(args: argparse.Namespace, model: Path, data: Path, work: Path) -> dict[str, Any]:
    """The trainer exactly as the local backend launches it: spec.json, then the module."""
    sys.path.insert(0, str(ROOT))
    from backends.local.hyperparams import resolve
    from backends.local.runs import RunDir, write_json_atomic

    run = RunDir(work / f"ours-{time.time_ns()}")
    run.path.mkdir(parents=True)
    spec = {"job_id": "bench", "base_model": "smollm2-shape", "model_location": str(model),
            "model_source": "bench", "method": "sft",
            "hyperparameters": resolve("sft", hyperparameters(args)).values,
            "training_file": str(data), "validation_file": None, "suffix": None,
            "options": {"memorization_probe": 2}, "torch_threads": None,
            "heartbeat_interval": 5.0, "seq": 0, "submitted_at": time.time()}
    write_json_atomic(run.spec, spec)
    started = time.perf_counter()
    with run.log.open("wb") as log:
        code = subprocess.call([sys.executable, "-m", "backends.local.train", "--run-dir",
                                str(run.path)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    status = json.loads(run.status_file.read_text())
    result = status.get("result") or {}
    if code != 0:
        print(run.log.read_text()[-4000:])
        raise SystemExit(f"our trainer failed: {status.get('reason')}")
    if not (Path(result["adapter_path"]) / "adapter_model.safetensors").is_file():
        raise SystemExit("our trainer finished without an adapter_model.safetensors")
    summary = result.get("train_summary") or {}
    metrics = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    return {"side": "tunebridge", "path": result.get("path"), "wall_s": wall,
            "train_runtime_s": summary.get("train_runtime"), "steps": result.get("global_step"),
            "peak_vram_allocated_bytes": result.get("peak_vram_allocated_bytes"),
            "peak_vram_reserved_bytes": result.get("peak_vram_reserved_bytes"),
            "first_loss": metrics[0].get("loss"), "last_loss": metrics[-1].get("loss"),
            "metric_records": len(metrics), "adapter": result.get("adapter_path"),
            "memorization": result.get("memorization"), "run_dir": str(run.path)}


def plain_worker(args: argparse.Namespace) -> None:
    """What a user would write by hand with trl + peft + bitsandbytes, same settings."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    hp = hyperparameters(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(args.model, quantization_config=quant,
                                                 dtype=torch.bfloat16, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    rows = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"])
    config = SFTConfig(output_dir=args.work, max_steps=hp["max_steps"],
                       per_device_train_batch_size=hp["batch_size"], learning_rate=2e-4,
                       warmup_steps=0.03, weight_decay=0.01, seed=42, logging_steps=1,
                       report_to="none", disable_tqdm=True, bf16=True, save_strategy="no",
                       gradient_checkpointing=True, max_length=hp["max_seq_length"],
                       gradient_checkpointing_kwargs={"use_reentrant": False})
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora)
    output = trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    print("RESULT " + json.dumps({
        "side": "plain", "train_runtime_s": output.metrics["train_runtime"],
        "steps": trainer.state.global_step, "first_loss": losses[0], "last_loss": losses[-1],
        "peak_vram_allocated_bytes": torch.cuda.max_memory_allocated(),
        "peak_vram_reserved_bytes": torch.cuda.max_memory_reserved()}))


def run_plain(args: argparse.Namespace, model: Path, data: Path, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--plain-worker", "--model", str(model), "--data", str(data),
         "--work", str(work / f"plain-{time.time_ns()}"), "--steps", str(args.steps),
         "--batch", str(args.batch), "--seq-len", str(args.seq_len)],
        capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit("plain trl run failed")
    return {**json.loads(lines[-1][len("RESULT "):]), "wall_s": time.perf_counter() - started}


def tokens_per_s(row: dict[str, Any], args: argparse.Namespace) -> float:
    return float(row["steps"]) * args.batch * args.seq_len / float(row["train_runtime_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1.7b")
    parser.add_argument("--tokenizer-dir", type=Path, default=ROOT / ".gpu" / "tokenizer")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--plain-worker", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--data")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.plain_worker:
        plain_worker(args)
        return
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU here; run this on the GPU machine")
        raise SystemExit(2)
    work = Path("/tmp/tunebridge-gpu-bench")
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(args.shape, args.tokenizer_dir, work / f"model-{args.shape}")
    data = write_dataset(work / "train.jsonl", max(200, args.steps * args.batch))
    rows = []
    for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both sides
        rows.append(run_plain(args, model, data, work))
        rows.append(run_ours(args, model, data, work))
    for row in rows:
        row["tokens_per_s"] = tokens_per_s(row, args)
        print(json.dumps(row))
    best = {side: max((r for r in rows if r["side"] == side), key=lambda r: r["tokens_per_s"])
            for side in ("plain", "tunebridge")}
    ratio = best["tunebridge"]["tokens_per_s"] / best["plain"]["tokens_per_s"]
    vram = (best["tunebridge"]["peak_vram_allocated_bytes"]
            / best["plain"]["peak_vram_allocated_bytes"])
    print(f"device: {torch.cuda.get_device_name(0)}  shape: SmolLM2-{args.shape}  "
          f"seq {args.seq_len} x batch {args.batch}, {args.steps} steps, path "
          f"{best['tunebridge']['path']}")
    for side in ("plain", "tunebridge"):
        r = best[side]
        print(f"{side:>10}: {r['tokens_per_s']:9.0f} tokens/s  peak VRAM "
              f"{r['peak_vram_allocated_bytes'] / 2**30:6.2f} GiB allocated, "
              f"{r['peak_vram_reserved_bytes'] / 2**30:6.2f} GiB reserved  "
              f"loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}")
    print(f"ratio tunebridge/plain: tokens/s {ratio:.3f}, peak VRAM {vram:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gpu_qlora_{args.shape}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
