"""The seed's tables as policy: defaults, recommended ranges (warnings), unusable values."""

from __future__ import annotations

import pytest

from tunebridge.errors import InvalidInput
from tunebridge.hyperparameters import resolve


def test_sft_defaults_come_from_the_seed() -> None:
    values = resolve(method="sft", backend="local", given={}).values
    assert values == {
        "learning_rate": 2e-4, "n_epochs": 3, "batch_size": 4, "warmup_ratio": 0.03,
        "weight_decay": 0.01, "lora_r": 16, "lora_alpha": 16, "lora_dropout": 0.0,
    }


def test_dpo_defaults_come_from_the_seed() -> None:
    values = resolve(method="dpo", backend="local", given={}).values
    assert values["learning_rate"] == 5e-6
    assert values["beta"] == 0.1
    assert values["n_epochs"] == 1


def test_alpha_follows_rank_unless_given() -> None:
    assert resolve(method="sft", backend="local", given={"lora_r": 32}).values["lora_alpha"] == 32
    given = {"lora_r": 32, "lora_alpha": 8}
    assert resolve(method="sft", backend="local", given=given).values["lora_alpha"] == 8


@pytest.mark.parametrize(("name", "value"), [
    ("learning_rate", 1e-3), ("learning_rate", 5e-6), ("n_epochs", 8), ("batch_size", 1),
    ("warmup_ratio", 0.2), ("weight_decay", 0.3), ("lora_r", 4), ("lora_r", 128),
    ("lora_dropout", 0.3),
])
def test_outside_the_seed_range_is_a_warning_not_an_error(name: str, value: float) -> None:
    resolved = resolve(method="sft", backend="local", given={name: value})
    assert resolved.values[name] == value
    assert [w.field for w in resolved.warnings] == [f"hyperparameters.{name}"]
    assert resolved.warnings[0].severity == "warning"


def test_inside_the_seed_range_is_silent() -> None:
    given = {"learning_rate": 1e-4, "n_epochs": 2, "batch_size": 8, "lora_r": 64,
             "lora_dropout": 0.1}
    assert resolve(method="sft", backend="local", given=given).warnings == []


@pytest.mark.parametrize("given", [
    {"learning_rate": 0}, {"learning_rate": -1e-4}, {"n_epochs": 0}, {"n_epochs": 1.5},
    {"batch_size": "many"}, {"lora_r": True}, {"temperature": 0.7},
])
def test_unusable_values_are_errors_with_the_field(given: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as raised:
        resolve(method="sft", backend="local", given=given)
    (name,) = given
    assert [p.field for p in raised.value.problems] == [f"hyperparameters.{name}"]


def test_openai_uses_its_own_knobs() -> None:
    resolved = resolve(method="sft", backend="openai", given={"learning_rate_multiplier": 3.0})
    assert set(resolved.values) == {"n_epochs", "batch_size", "learning_rate_multiplier"}
    assert resolved.warnings[0].field == "hyperparameters.learning_rate_multiplier"
    with pytest.raises(InvalidInput):
        resolve(method="sft", backend="openai", given={"lora_r": 16})


def test_dpo_learning_rate_at_sft_level_is_linted() -> None:
    resolved = resolve(method="dpo", backend="local", given={"learning_rate": 2e-4})
    assert resolved.warnings and "10-50x lower" in resolved.warnings[0].message
