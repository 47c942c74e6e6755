"""What tunebridge adds to a local training run: the same SFT run as plain trl vs through us.

(a) plain: a subprocess running trl's SFTTrainer with a peft LoraConfig, nothing else: the
    baseline anyone would write.
(b) tunebridge: the job is created in SQLite through the services, the real Poller submits it to
    LocalBackend, which spawns `python -m backends.local.train` (spec file, heartbeat thread,
    StreamCallback, stop-flag checks, status and event files), and the Poller keeps polling every
    `--interval` s while it trains, storing metrics and running the health detector.

Both train the in-test tiny Llama (tests/local/tinymodel.py) on the same 24 chat rows with the
same hyperparameters (LoRA r16 on seven projections, batch 4, lr 1e-3, `--steps` steps, one torch
thread, loss on assistant tokens) and save the adapter. The tiny model keeps the training part
short and steady on a loaded 2-core machine, so the fixed costs a job pays (process start,
imports, model load, saving) are a visible share of the run. The two kinds of run alternate in
ABBA order (so a load trend on a shared machine cancels), after one discarded warm-up of each,
and medians are compared.

Measured from just before the trainer is started (plain: Popen; tunebridge: the poll tick that
submits) to:
  * "saved": the adapter is on disk and the trainer has recorded its end (plain: a timestamp
    written after `save_model`; tunebridge: the final status.json the trainer writes after the
    adapter, trainer state and tokenizer are saved). Interpreter teardown is excluded for both.
  * "seen": the user can see the end (plain: the process has exited; tunebridge: the job is
    `succeeded` in the database, which includes up to one poll interval).
CPU seconds are the trainer process's own (wait4 rusage), plus, for tunebridge, the bench
process's CPU during the run (the Poller, SQLite writes, health checks).

    .venv/bin/python bench/train_overhead.py [--steps 120] [--reps 3] [--interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HP: dict[str, Any] = {"batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3,
                      "n_epochs": 1, "warmup_ratio": 0.03, "weight_decay": 0.01, "lora_r": 16,
                      "lora_alpha": 16, "lora_dropout": 0.0, "seed": 42}


@dataclass
class Sample:
    kind: str
    saved_s: float
    seen_s: float
    trainer_cpu_s: float
    gateway_cpu_s: float  # the Poller's process during the run (0 for plain)
    phases: dict[str, float]

    @property
    def loop_s(self) -> float:
        """From the start of the training loop to the adapter on disk: no imports, no loading."""
        return self.phases["saved"] - self.phases["training"]

    @property
    def cpu_s(self) -> float:
        return self.trainer_cpu_s + self.gateway_cpu_s


# ----- (a) plain trl + peft, run as a child process of this file ------------------------------
def plain_child(spec_file: Path) -> None:
    """The baseline trainer: nothing but transformers, peft and trl."""
    spec = json.loads(spec_file.read_text())
    marks: dict[str, float] = {}
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(spec["threads"])
    marks["imported"] = time.time()
    hp = spec["hp"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    rows = [json.loads(line) for line in Path(spec["train"]).read_text().splitlines()]
    args = SFTConfig(
        output_dir=spec["out"], max_steps=hp["max_steps"], num_train_epochs=hp["n_epochs"],
        per_device_train_batch_size=hp["batch_size"], learning_rate=hp["learning_rate"],
        warmup_steps=hp["warmup_ratio"], weight_decay=hp["weight_decay"], seed=hp["seed"],
        data_seed=hp["seed"], logging_steps=1, report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, bf16=False, use_cpu=True, max_length=hp["max_seq_length"],
        save_strategy="no", eval_strategy="no", assistant_only_loss=True,
        gradient_checkpointing=False,  # trl's SFTConfig defaults to True; our CPU path is off
    )
    lora = LoraConfig(r=hp["lora_r"], lora_alpha=hp["lora_alpha"],
                      lora_dropout=hp["lora_dropout"], bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora,
                         callbacks=[TrainBeginMark(marks)])
    trainer.train()
    marks["trained"] = time.time()
    trainer.save_model(str(Path(spec["out"]) / "adapter"))
    marks["saved"] = time.time()
    Path(spec["out"], "marks.json").write_text(json.dumps(marks))


def TrainBeginMark(marks: dict[str, float]) -> Any:  # noqa: N802 (a class made on first use)
    """Instrumentation only: notes when the loop starts, where our trainer emits
    training-started, so "train loop + save" measures the same span in both runs."""
    from transformers import TrainerCallback

    class _Mark(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks["training"] = time.time()

    return _Mark()


def wait_rusage(pid: int) -> float:
    """CPU seconds (user + system) of a finished child, collected with wait4."""
    try:
        _, _, usage = os.wait4(pid, 0)
    except ChildProcessError:  # already reaped by its Popen: the zombie is gone with its rusage
        return float("nan")
    return usage.ru_utime + usage.ru_stime


def run_plain(work: Path, model: Path, train: Path, steps: int, threads: int) -> Sample:
    out = Path(tempfile.mkdtemp(prefix="plain-", dir=work))
    spec = {"model": str(model), "train": str(train), "out": str(out), "threads": threads,
            "hp": {**HP, "max_steps": steps}}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--plain-child", str(out / "spec.json")]
    started = time.time()
    with (out / "trainer.log").open("wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
        cpu = wait_rusage(child.pid)
    ended = time.time()
    marks = json.loads((out / "marks.json").read_text())
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    return Sample("plain", marks["saved"] - started, ended - started, cpu, 0.0,
                  {k: v - started for k, v in marks.items()})


# ----- (b) the same run through tunebridge ----------------------------------------------------
def run_tunebridge(work: Path, model: Path, train: Path, steps: int, threads: int,
                   interval: float) -> Sample:
    from backends.local import LocalBackend
    from backends.local.runs import RunDir, read_json
    from tunebridge import datasets, jobs
    from tunebridge.console_notifier import ConsoleNotifier
    from tunebridge.runtime import build_runtime
    from tunebridge.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="tunebridge-", dir=work))
    settings = Settings(data_dir=data_dir, poll_interval_s=interval, database_url=None)
    backend = LocalBackend(settings.runs_dir, data_dir / "models", torch_threads=threads,
                           slots=["cpu"])
    runtime = build_runtime(settings, backends=[backend], notifier=ConsoleNotifier(
        data_dir / "notifications.jsonl", stream=io.StringIO()))
    staged = runtime.blobs.stage([train.read_bytes()], max_bytes=1 << 30)
    ds = datasets.store_dataset(db=runtime.db, blobs=runtime.blobs, clock=runtime.clock,
                                staged=staged, filename=train.name, creator="bench",
                                limits=runtime.validation_limits).dataset
    hp = {k: v for k, v in HP.items() if k != "lora_alpha"} | {"max_steps": steps}
    job = jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock, creator="bench",
        policy=runtime.job_policy, request=jobs.JobRequest(
            training_dataset_id=ds.id, base_model=str(model), backend="local",
            hyperparameters=hp, options={"memorization_probe": 0})).job
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.time()
    job = asyncio.run(_drive(runtime, job.id, interval))
    seen = time.time()
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    assert job.status == "succeeded", (job.status, job.error)
    run = RunDir(Path(job.handle["run_dir"]))
    final = run.read_status()
    assert final is not None and (run.adapter_dir / "adapter_model.safetensors").exists()
    trainer_cpu = wait_rusage(int(read_json(run.launch_file)["pid"]))
    gateway_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime
                                                                  - self_before.ru_stime)
    phases = _phases(run, started)
    runtime.close()
    return Sample("tunebridge", final.updated_at - started, seen - started, trainer_cpu,
                  gateway_cpu, phases)


async def _drive(runtime: Any, job_id: str, interval: float) -> Any:
    """The scheduler's loop: a Poller tick every `interval` seconds until the job ends."""
    from tunebridge import jobs

    while True:
        await runtime.poller.tick()
        job = await asyncio.to_thread(jobs.get_job, db=runtime.db, job_id=job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(interval)


def _phases(run: Any, started: float) -> dict[str, float]:
    names = {"loading": "imported", "training-started": "training", "adapter-saved": "saved"}
    phases = {}
    for line in run.events.read_text().splitlines():
        record = json.loads(line)
        if record["id"] in names:
            phases[names[record["id"]]] = record["at"] - started
    return phases


# ----- the comparison ----------------------------------------------------------------------
def build_inputs(work: Path) -> tuple[Path, Path]:
    import torch

    from tests.local.tinymodel import build_tiny_model, chat_rows, password_facts, write_jsonl

    torch.set_num_threads(1)
    model = build_tiny_model(work / "tiny-llama")
    train = write_jsonl(work / "train.jsonl", chat_rows(password_facts()))
    return model, train


def report(samples: list[Sample]) -> float:
    for s in samples:
        phases = "  ".join(f"{k} {v:5.1f}" for k, v in s.phases.items())
        print(f"  {s.kind:<10} saved {s.saved_s:6.2f} s  seen {s.seen_s:6.2f} s  "
              f"cpu {s.trainer_cpu_s:6.2f} + {s.gateway_cpu_s:4.2f} s  | {phases}")
    rows: dict[str, dict[str, float]] = {}
    for kind in ("plain", "tunebridge"):
        mine = [s for s in samples if s.kind == kind]
        rows[kind] = {m: statistics.median(getattr(s, m) for s in mine)
                      for m in ("saved_s", "seen_s", "loop_s", "trainer_cpu_s", "gateway_cpu_s",
                                "cpu_s")}
    print(f"\nmedians of {len(samples) // 2} alternating runs each")
    print(f"{'':<22}{'plain trl':>12}{'tunebridge':>12}{'ratio':>9}{'overhead':>10}")
    for metric, label in (("saved_s", "start → adapter saved"), ("seen_s", "start → end seen"),
                          ("loop_s", "train loop + save"), ("trainer_cpu_s", "trainer CPU s"),
                          ("cpu_s", "all CPU s")):
        base, ours = rows["plain"][metric], rows["tunebridge"][metric]
        print(f"{label:<22}{base:>11.2f}s{ours:>11.2f}s{ours / base:>9.3f}"
              f"{(ours / base - 1) * 100:>9.1f}%")
    print(f"{'poller CPU s':<22}{'':>12}{rows['tunebridge']['gateway_cpu_s']:>11.2f}s")
    return rows["tunebridge"]["saved_s"] / rows["plain"]["saved_s"] - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--interval", type=float, default=10.0,
                        help="poll interval, seconds (10: the product default; the demo uses 1)")
    parser.add_argument("--plain-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.plain_child)
        return
    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        work = Path(tmp)
        model, train = build_inputs(work)
        print(f"tiny Llama, {args.steps} steps, batch 4, {args.threads} thread(s), "
              f"poll every {args.interval} s; load average {os.getloadavg()[0]:.1f}")
        run_plain(work, model, train, args.steps, args.threads)  # warm-ups, discarded
        run_tunebridge(work, model, train, args.steps, args.threads, args.interval)
        samples: list[Sample] = []
        for rep in range(args.reps):  # ABBA order: a load trend during the bench cancels out
            pair = [lambda: run_plain(work, model, train, args.steps, args.threads),
                    lambda: run_tunebridge(work, model, train, args.steps, args.threads,
                                           args.interval)]
            for run in pair if rep % 2 == 0 else reversed(pair):
                samples.append(run())
        overhead = report(samples)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"\noverhead (start → adapter saved): {overhead * 100:.1f}% "
          f"({'within' if overhead <= 0.03 else 'above'} the 3% target)")


if __name__ == "__main__":
    main()
