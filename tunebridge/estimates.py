"""Cost and GPU-time estimates for a job, and whether they exceed the configured caps.

Pure functions over numbers the validator already produced (tokens billed per epoch), so the
job-creation path can decide "queue it" or "wait for approval" before anything is submitted.
Every table here is a default: callers pass their own (from settings) to override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# OpenAI's published training prices in USD per 1M training tokens. Configurable: these are
# only defaults, passed as `prices=`; the longest key that prefixes the model name wins, so
# "gpt-4.1-mini" prices "gpt-4.1-mini-2025-04-14" and "ft:" models price as their base.
DEFAULT_PRICES: Mapping[str, float] = {
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini": 5.00,
    "gpt-4.1-nano": 1.50,
    "gpt-3.5-turbo": 8.00,
}


@dataclass(frozen=True)
class Throughput:
    """Training tokens per second on one device, for a model of `reference_params_b` billion
    parameters; other sizes scale inversely with parameter count (compute-bound training)."""

    tokens_per_second: float
    reference_params_b: float = 8.0


# Rough LoRA/QLoRA throughputs for an 8B model with gradient checkpointing; configurable.
# The CPU entry is measured: SmolLM2-135M LoRA, batch 4 x 256 tokens, ~7.5 s a step.
DEFAULT_THROUGHPUT: Mapping[str, Throughput] = {
    "h200": Throughput(7_000),
    "h100": Throughput(6_000),
    "a100": Throughput(3_500),
    "l40s": Throughput(2_500),
    "a10g": Throughput(1_200),
    "l4": Throughput(900),
    "t4": Throughput(400),
    "cpu": Throughput(140, reference_params_b=0.135),
}

# The OpenAI cookbook's rule for n_epochs="auto": aim at 3 epochs, kept within 100..25,000
# examples seen, and 1..25 epochs.
_TARGET_EPOCHS, _MIN_SEEN, _MAX_SEEN, _MIN_EPOCHS, _MAX_EPOCHS = 3, 100, 25_000, 1, 25


def openai_auto_epochs(num_examples: int) -> int:
    """The epochs OpenAI picks when a job says n_epochs='auto'."""
    if num_examples <= 0:
        return _TARGET_EPOCHS
    if num_examples * _TARGET_EPOCHS < _MIN_SEEN:
        return min(_MAX_EPOCHS, _MIN_SEEN // num_examples)
    if num_examples * _TARGET_EPOCHS > _MAX_SEEN:
        return max(_MIN_EPOCHS, _MAX_SEEN // num_examples)
    return _TARGET_EPOCHS


def price_per_million(model: str, prices: Mapping[str, float] = DEFAULT_PRICES) -> float | None:
    base = model.split(":")[1] if model.startswith("ft:") and ":" in model[3:] else model
    keys = [key for key in prices if base.startswith(key)]
    return prices[max(keys, key=len)] if keys else None


@dataclass(frozen=True)
class CostEstimate:
    model: str
    billed_tokens: int  # sum(min(n, context)) x epochs
    epochs: int
    usd_per_million: float | None
    cost_usd: float | None  # None: the price table has no entry for the model


def estimate_cost(tokens_per_epoch: int, *, model: str, epochs: int,
                  prices: Mapping[str, float] = DEFAULT_PRICES) -> CostEstimate:
    billed = tokens_per_epoch * epochs
    price = price_per_million(model, prices)
    cost = None if price is None else round(billed / 1_000_000 * price, 4)
    return CostEstimate(model=model, billed_tokens=billed, epochs=epochs, usd_per_million=price,
                        cost_usd=cost)


@dataclass(frozen=True)
class GpuTimeEstimate:
    device: str
    training_tokens: int
    tokens_per_second: float
    gpu_hours: float  # device-hours, what a GPU-hours cap limits
    wall_hours: float  # spread over `gpus` devices, assuming ideal data parallelism
    gpus: int


def estimate_gpu_time(tokens_per_epoch: int, *, epochs: int, device: str,
                      model_params_b: float | None = None, gpus: int = 1,
                      throughput: Mapping[str, Throughput] = DEFAULT_THROUGHPUT
                      ) -> GpuTimeEstimate:
    entry = throughput.get(device.lower())
    if entry is None:
        raise ValueError(f"no throughput for device {device!r}; known: {sorted(throughput)}")
    rate = entry.tokens_per_second
    if model_params_b:
        rate *= entry.reference_params_b / model_params_b
    tokens = tokens_per_epoch * epochs
    hours = tokens / rate / 3600
    return GpuTimeEstimate(device=device.lower(), training_tokens=tokens, tokens_per_second=rate,
                           gpu_hours=round(hours, 4), wall_hours=round(hours / max(gpus, 1), 4),
                           gpus=gpus)


@dataclass(frozen=True)
class Estimate:
    """What a job is expected to cost: money for OpenAI, device time for local training."""

    cost: CostEstimate | None = None
    gpu_time: GpuTimeEstimate | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"cost": asdict(self.cost) if self.cost else None,
                "gpu_time": asdict(self.gpu_time) if self.gpu_time else None}


def estimate_job(*, backend: str, model: str, tokens_per_epoch: int, epochs: int,
                 device: str | None = None, model_params_b: float | None = None, gpus: int = 1,
                 prices: Mapping[str, float] = DEFAULT_PRICES,
                 throughput: Mapping[str, Throughput] = DEFAULT_THROUGHPUT) -> Estimate:
    """OpenAI jobs cost money; local jobs cost device time (on the CPU when no GPU is named)."""
    if backend == "openai":
        return Estimate(cost=estimate_cost(tokens_per_epoch, model=model, epochs=epochs,
                                           prices=prices))
    return Estimate(gpu_time=estimate_gpu_time(tokens_per_epoch, epochs=epochs,
                                               device=device or "cpu",
                                               model_params_b=model_params_b, gpus=gpus,
                                               throughput=throughput))


@dataclass(frozen=True)
class Caps:
    """Limits above which a job waits for approval; None means no limit."""

    max_cost_usd: float | None = None
    max_gpu_hours: float | None = None
    unknown_needs_approval: bool = True  # an estimate we cannot make is not a small one


@dataclass(frozen=True)
class CapDecision:
    exceeded: bool
    reasons: tuple[str, ...] = ()


def exceeds_cap(estimate: Estimate, caps: Caps) -> CapDecision:
    """Whether the job must wait for approval, and why, in words fit for Slack."""
    reasons: list[str] = []
    cost = estimate.cost
    if caps.max_cost_usd is not None and cost is not None:
        if cost.cost_usd is None:
            if caps.unknown_needs_approval:
                reasons.append(f"no price is configured for {cost.model}; the cost cap is "
                               f"${caps.max_cost_usd:,.2f}")
        elif cost.cost_usd > caps.max_cost_usd:
            reasons.append(f"estimated cost ${cost.cost_usd:,.2f} exceeds the cap "
                           f"${caps.max_cost_usd:,.2f} ({cost.billed_tokens:,} billed tokens)")
    gpu = estimate.gpu_time
    if caps.max_gpu_hours is not None and gpu is not None and gpu.gpu_hours > caps.max_gpu_hours:
        reasons.append(f"estimated {gpu.gpu_hours:,.2f} GPU-hours on {gpu.device} exceed the cap "
                       f"of {caps.max_gpu_hours:,.2f}")
    return CapDecision(exceeded=bool(reasons), reasons=tuple(reasons))
