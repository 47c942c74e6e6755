"""Local QLoRA/LoRA trainer backend.

Importing this package stays light (no torch, transformers, peft or trl): those load only in the
trainer subprocess, `python -m backends.local.train`.
"""

from backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
