"""Starting, finding and stopping trainer processes, knowing only a pid written to disk.

Trainers run in their own session (process group) so that a gateway crash or Ctrl-C does not take
them down, and so one signal reaches the trainer and anything it forked. A pid alone is not an
identity (pids are reused), so the launch record also keeps the process start time from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import backends

# The directory that holds the `backends` package: the trainer needs it on PYTHONPATH to run
# `-m backends.local.train` whatever the gateway's working directory is.
PACKAGE_ROOT = Path(backends.__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_ticks: int | None

    def to_json(self) -> dict[str, int | None]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None when there is no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process we launched runs (a zombie or a reused pid counts as gone)."""
    if not Path("/proc/self/stat").exists():  # not Linux: best effort
        try:
            os.kill(ref.pid, 0)
        except ProcessLookupError:
            return False
        return True
    stat = _proc_stat(ref.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return ref.start_ticks is None or stat[1] == ref.start_ticks


def spawn(
    command: Sequence[str], log_path: Path, env_overrides: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start `command` detached in a new session, output appended to `log_path`."""
    env = dict(os.environ)
    env.update(env_overrides)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(log_path.parent),
            start_new_session=True,
            close_fds=True,
        )


def trainer_command(python: str, run_dir: Path) -> list[str]:
    return [python or sys.executable, "-m", "backends.local.train", "--run-dir", str(run_dir)]


def launcher_command(python: str, run_dir: Path, processes: int) -> list[str]:
    """The data-parallel launcher (backends.local.launch) of `processes` trainers."""
    return [python or sys.executable, "-m", "backends.local.launch",
            "--nproc-per-node", str(processes), "--run-dir", str(run_dir)]


def signal_group(ref: ProcessRef, sig: signal.Signals) -> bool:
    """Signal the trainer's process group; False when it is already gone."""
    if not is_alive(ref):
        return False
    try:
        os.killpg(ref.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, sig)
    return True


def describe_exit(returncode: int | None) -> str:
    """Words for an exit status; negative codes are signals (SIGKILL is usually the OOM killer)."""
    if returncode is None:
        return "exit status unknown (the gateway that started it is gone)"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (possibly out of memory, or killed by hand)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {returncode}"
