"""Data-parallel jobs: how many trainer processes a job asks for, and how those processes agree.

A job with `num_gpus` N > 1, or `num_processes` N > 1, trains data-parallel: N copies of the
trainer, and transformers' Trainer wraps the model in DistributedDataParallel because RANK,
LOCAL_RANK and WORLD_SIZE are set (NCCL on GPUs, gloo on CPU processes). On one node torch's
launcher starts them (`torch.distributed.run`, driven by backends.local.launch); a job with
`num_nodes` > 1 runs them as Ray Train workers (backends.local.ray_train), which set the same
variables and join the process group before our code runs. Each rank trains on its share of
every batch; gradients are averaged, so every rank holds the same adapter.

The run directory has one writer: rank 0 writes the status, heartbeat, metric and event streams
and the adapter. Decisions that end training (a stop request, a non-finite loss) are taken by all
ranks at the same step, else the others would wait forever in the next all-reduce.

Parsing options and reading the environment need no torch; the collectives import it lazily.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Set by backends.local.launch for the trainers it starts: they die with it (see die_with_launcher)
LAUNCHER_PID_ENV = "TUNEBRIDGE_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


class ParallelismError(ValueError):
    """A job's parallelism options that no executor can honour; the user can fix them."""


@dataclass(frozen=True)
class Parallelism:
    """What a job asks for: `processes` data-parallel trainers over `gpus` GPUs (0: on CPU),
    spread over `nodes` machines (all three are the job's totals)."""

    processes: int = 1
    gpus: int = 1
    nodes: int = 1

    @property
    def data_parallel(self) -> bool:
        return self.processes > 1

    @property
    def on_cpu(self) -> bool:
        return self.gpus == 0

    @property
    def per_node(self) -> int:
        return self.processes // self.nodes


def _count(options: Mapping[str, Any], key: str, minimum: int) -> int | None:
    """An option that must be a whole number >= minimum (1.0 from JSON is fine, True is not)."""
    if key not in options:
        return None
    value = options[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParallelismError(f"option {key} must be a whole number >= {minimum}, got {value!r}")
    return value


def parallelism(options: Mapping[str, Any], multi_node: bool = False) -> Parallelism:
    """The job's parallelism from its options, validated.

    - `num_gpus` (default 1): GPUs for the job; 0 trains on CPU. N > 1: N processes, one per GPU.
    - `num_processes` (default 1, or `num_gpus` when that is > 1, or `num_nodes` on CPU):
      data-parallel trainer processes. N > 1 needs `num_gpus` said explicitly: 0 for N CPU
      processes (gloo), or N.
    - `num_nodes` (default 1): machines the processes are spread over, evenly. Only where the
      executor can start trainers on other machines (`multi_node`: the Ray executor).
    """
    nodes = _count(options, "num_nodes", 1) or 1
    if nodes > 1 and not multi_node:
        raise ParallelismError(
            f"option num_nodes is {nodes}: multi-node training is not supported by trainers "
            "started on the gateway's own host; it needs TUNEBRIDGE_LOCAL_EXECUTOR=ray (Ray "
            "Train across the cluster's nodes, docs/deploy.md)")
    gpus = _count(options, "num_gpus", 0)
    processes = _count(options, "num_processes", 1)
    if nodes > 1 and gpus is None:
        raise ParallelismError(
            f"option num_nodes {nodes} needs num_gpus as well: the job's total GPUs (a multiple "
            f"of {nodes}), or 0 for CPU processes")
    if processes is None:
        processes = gpus if gpus is not None and gpus > 1 else (nodes if gpus == 0 else 1)
    if processes > 1 and gpus is None:
        raise ParallelismError(
            f"option num_processes {processes} needs num_gpus as well: 0 for {processes} CPU "
            f"processes (gloo), or {processes} for one process per GPU (NCCL)")
    if gpus and processes != gpus:
        raise ParallelismError(
            f"options num_processes {processes} and num_gpus {gpus} disagree: a data-parallel "
            "job runs one process per GPU (or num_gpus 0 for CPU processes)")
    if processes % nodes:
        what = f"num_gpus {gpus}" if gpus else f"num_processes {processes}"
        raise ParallelismError(
            f"option {what} cannot be spread evenly over num_nodes {nodes}: it is the job's "
            f"total, so it must be a multiple of {nodes}")
    return Parallelism(processes=processes, gpus=1 if gpus is None else gpus, nodes=nodes)


@dataclass(frozen=True)
class World:
    """This trainer process's place in its data-parallel group, from the launcher's variables."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: int | None = None  # the CUDA device Ray Train gave this worker, when it says

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """torchrun and Ray Train both set RANK, LOCAL_RANK and WORLD_SIZE. Ray Train also names
        the worker's own GPU in ACCELERATE_TORCH_DEVICE (`cuda:K`, an index among the node's
        visible devices), which accelerate reads too: we follow it rather than assume K is the
        local rank."""
        env = os.environ if env is None else env
        device = env.get("ACCELERATE_TORCH_DEVICE", "")
        return cls(rank=int(env.get("RANK", 0)), local_rank=int(env.get("LOCAL_RANK", 0)),
                   size=int(env.get("WORLD_SIZE", 1)),
                   device=int(device[5:]) if device.startswith("cuda:") else None)

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes to the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def cuda_index(self) -> int:
        """This rank's GPU among the visible devices."""
        return self.local_rank if self.device is None else self.device


def die_with_launcher() -> None:
    """Ask Linux to SIGKILL this trainer when the launcher that started it dies.

    torch's launcher starts every rank in its own session, so a signal to the launcher's process
    group (what the executors send) does not reach them; without this a SIGKILLed launcher
    (cancel escalation, a stale heartbeat, the OOM killer) would leave ranks holding GPUs.
    """
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != int(launcher):  # it died before the request was in place
        os._exit(1)


def init_group(world: World, cuda: bool) -> str | None:
    """Join the process group (before loading the model, so every early decision can be shared);
    accelerate, inside the Trainer, finds it initialised and uses it. Under Ray Train the group
    exists already (Ray Train initialised it from MASTER_ADDR and MASTER_PORT before calling
    us): it is used as it is. Returns the backend."""
    if not world.distributed:
        return None
    import torch
    import torch.distributed as dist

    if cuda:
        torch.cuda.set_device(world.cuda_index)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return str(dist.get_backend())


def _device() -> Any:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any rank (an all-reduce; every rank must call it)."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (every rank must call it)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def close_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_collective_error(exc: BaseException) -> bool:
    """An error raised because another rank went away (a broken all-reduce), not a cause."""
    try:
        from torch.distributed import DistError
    except ImportError:  # pragma: no cover - torch without distributed support
        return False
    text = str(exc)
    return isinstance(exc, DistError) or any(
        marker in text for marker in ("Connection closed by peer", "Connection reset by peer",
                                      "NCCL error", "ProcessGroupGloo", "ProcessGroupNCCL"))
