"""The deployment files agree with the code: every setting is documented, and the compose file
only sets variables that exist, wires the services the scaled-out setup needs, and keeps the
paths and versions the Ray executor depends on. (No Docker engine here: `docker compose config`
cannot run, so the structure is checked by parsing.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebridge.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DOC = (REPO / "docs" / "deploy.md").read_text()
PRODUCT = ("tunebridge", "storage", "backends", "gateway", "bot")


def env_name(field: str) -> str:
    return f"TUNEBRIDGE_{field.upper()}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker" / "compose.yaml").read_text()))


def test_every_setting_is_documented() -> None:
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in DEPLOY_DOC]
    assert not missing, f"add these to the table in docs/deploy.md: {missing}"


def test_every_variable_the_code_reads_is_documented() -> None:
    names = {name for package in PRODUCT for path in (REPO / package).rglob("*.py")
             for name in re.findall(r"TUNEBRIDGE_[A-Z0-9_]*[A-Z0-9]", path.read_text())}
    assert names, "the scan found nothing: the test would pass vacuously"
    assert not sorted(n for n in names if f"`{n}`" not in DEPLOY_DOC)


def test_compose_sets_only_real_settings(compose: dict[str, Any]) -> None:
    fields = {env_name(f) for f in Settings.model_fields}
    set_here = {key for service in compose["services"].values()
                for key in (service.get("environment") or {}) if key.startswith("TUNEBRIDGE_")}
    assert "TUNEBRIDGE_RAY_ADDRESS" in set_here
    assert not set_here - fields, f"unknown settings in compose.yaml: {set_here - fields}"


def test_compose_wires_the_scaled_out_setup(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "gateway-1", "gateway-2", "ray-head", "ray-gpu-worker"} <= set(services)
    gateways = [services["gateway-1"], services["gateway-2"]]
    for gateway in gateways:
        env = gateway["environment"]
        assert env["TUNEBRIDGE_DATABASE_URL"].startswith("postgresql://")
        assert env["TUNEBRIDGE_LOCAL_EXECUTOR"] == "ray"
        assert env["TUNEBRIDGE_RAY_ADDRESS"] == "http://ray-head:8265"
        assert gateway["build"]["args"]["EXTRAS"] == "ray"
        assert "TUNEBRIDGE_SLACK_APP_TOKEN" not in env  # HTTP mode behind a load balancer
    assert gateways[0]["ports"] != gateways[1]["ports"]
    # The trainer reads run directories and datasets at the paths the gateway wrote.
    data = {name: [v for v in s.get("volumes", []) if v.endswith(":/data")]
            for name, s in services.items() if name != "postgres"}
    assert set(map(tuple, data.values())) == {("tunebridge-data:/data",)}, data
    devices = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    head_env = services["ray-head"]["environment"]
    assert head_env["RAY_AUTH_MODE"] == "token"
    assert int(head_env["RAY_JOB_START_TIMEOUT_SECONDS"]) >= 3600
    token_refs = {services["ray-head"]["environment"]["RAY_AUTH_TOKEN"],
                  gateways[0]["environment"]["TUNEBRIDGE_RAY_DASHBOARD_TOKEN"]}
    assert len(token_refs) == 1, "the gateways must send the token the cluster checks"
    for service in services.values():
        build = service.get("build")
        if build:
            assert (REPO / "docker" / build["context"] / build["dockerfile"]).is_file()


def test_images_and_extras_agree_on_versions() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    ray_pin = next(d for d in extras["ray"] if d.startswith("ray"))
    version = ray_pin.split("==")[1]
    trainer = (REPO / "docker" / "trainer.Dockerfile").read_text()
    assert f"rayproject/ray:{version}-" in trainer, "the image's Ray must equal the client's"
    torch_pin = next(d for d in extras["local"] if d.startswith("torch=="))
    assert f"TORCH_VERSION={torch_pin.split('==')[1]}" in trainer
    assert "bitsandbytes" in " ".join(extras["local"])
    assert '".[local,ray]"' in trainer
    assert "torch" not in (REPO / "docker" / "gateway.Dockerfile").read_text().lower().replace(
        "no torch", "")
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"-e \"\.\[[a-z,]*ray[a-z,]*\]\"", makefile), "make test must install ray"
