"""Cost and GPU-time estimates and the approval cap decision."""

from __future__ import annotations

import pytest

from tunebridge.estimates import (
    DEFAULT_PRICES,
    Caps,
    Estimate,
    Throughput,
    estimate_cost,
    estimate_gpu_time,
    estimate_job,
    exceeds_cap,
    openai_auto_epochs,
    price_per_million,
)


@pytest.mark.parametrize(("model", "price"), [
    ("gpt-4o-mini-2024-07-18", 3.00), ("gpt-4o-2024-08-06", 25.00),
    ("gpt-4.1-mini-2025-04-14", 5.00), ("gpt-4.1-nano", 1.50), ("gpt-3.5-turbo-0125", 8.00),
    ("ft:gpt-4o-mini-2024-07-18:acme::x1", 3.00), ("llama-3-8b", None)])
def test_price_lookup_by_longest_prefix(model: str, price: float | None) -> None:
    assert price_per_million(model) == price


def test_cost_is_billed_tokens_times_price() -> None:
    estimate = estimate_cost(2_000_000, model="gpt-4o-mini-2024-07-18", epochs=3)
    assert estimate.billed_tokens == 6_000_000
    assert estimate.cost_usd == pytest.approx(18.0)
    custom = estimate_cost(500_000, model="house-model", epochs=2, prices={"house": 10.0})
    assert custom.cost_usd == pytest.approx(10.0)
    assert estimate_cost(1, model="nobody", epochs=1).cost_usd is None
    assert DEFAULT_PRICES["gpt-4.1-nano"] == 1.50


def test_gpu_time_from_throughput_and_model_size() -> None:
    table = {"h100": Throughput(5_000, reference_params_b=8.0)}
    base = estimate_gpu_time(9_000_000, epochs=2, device="H100", throughput=table)
    assert base.training_tokens == 18_000_000
    assert base.gpu_hours == pytest.approx(1.0)
    bigger = estimate_gpu_time(9_000_000, epochs=2, device="h100", model_params_b=16,
                               gpus=4, throughput=table)
    assert bigger.gpu_hours == pytest.approx(2.0) and bigger.wall_hours == pytest.approx(0.5)
    cpu = estimate_gpu_time(1_000_000, epochs=1, device="cpu", model_params_b=0.135)
    assert cpu.tokens_per_second == pytest.approx(140)
    with pytest.raises(ValueError, match="no throughput"):
        estimate_gpu_time(1, epochs=1, device="tpu")


def test_caps_decide_approval_with_reasons() -> None:
    cost = estimate_cost(10_000_000, model="gpt-4o-2024-08-06", epochs=1)  # $250
    gpu = estimate_gpu_time(36_000_000, epochs=1, device="h100",
                            throughput={"h100": Throughput(1_000)})  # 10 GPU-hours
    assert exceeds_cap(Estimate(cost=cost), Caps(max_cost_usd=300)).exceeded is False
    over = exceeds_cap(Estimate(cost=cost), Caps(max_cost_usd=100))
    assert over.exceeded and "$250.00 exceeds the cap $100.00" in over.reasons[0]
    assert exceeds_cap(Estimate(gpu_time=gpu), Caps(max_gpu_hours=8)).exceeded
    assert not exceeds_cap(Estimate(gpu_time=gpu), Caps(max_gpu_hours=12)).exceeded
    assert not exceeds_cap(Estimate(cost=cost, gpu_time=gpu), Caps()).exceeded


def test_unknown_price_under_a_cost_cap_needs_approval_unless_configured_otherwise() -> None:
    unknown = Estimate(cost=estimate_cost(1000, model="mystery", epochs=1))
    assert exceeds_cap(unknown, Caps(max_cost_usd=10)).exceeded
    assert not exceeds_cap(unknown, Caps(max_cost_usd=10, unknown_needs_approval=False)).exceeded
    assert Estimate(cost=unknown.cost).as_dict()["cost"]["cost_usd"] is None


@pytest.mark.parametrize(("examples", "epochs"), [
    (3, 25), (10, 10), (40, 3), (8_000, 3), (10_000, 2), (30_000, 1)])
def test_openai_auto_epochs_follow_the_cookbook(examples: int, epochs: int) -> None:
    assert openai_auto_epochs(examples) == epochs


def test_estimate_job_picks_money_or_device_time_by_backend() -> None:
    remote = estimate_job(backend="openai", model="gpt-4.1-nano", tokens_per_epoch=4_000_000,
                          epochs=2)
    assert remote.gpu_time is None and remote.cost is not None
    assert remote.cost.cost_usd == pytest.approx(12.0)
    local = estimate_job(backend="local", model="smollm2-135m", tokens_per_epoch=504_000,
                         epochs=1, model_params_b=0.135)
    assert local.cost is None and local.gpu_time is not None
    assert (local.gpu_time.device, local.gpu_time.gpu_hours) == ("cpu", pytest.approx(1.0))
    assert local.as_dict()["gpu_time"]["training_tokens"] == 504_000
