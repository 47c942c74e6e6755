"""Multi-node jobs (`num_nodes` > 1) through Ray Train, on a real Ray cluster of two nodes.

Both Ray nodes run on this host: a second raylet joins the session's head inside its network
namespace, so Ray Train's STRICT_SPREAD puts one rank on each node and the ranks' gloo group
spans both. The placement, the process group Ray Train sets up, the stop path and a rank's
death are real; separate machines, their network and NCCL are not. One gateway runs four jobs at
once (about 50-75 s here, mostly four pairs of workers importing transformers on two cores).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ray.conftest import ray_client
from tests.ray.gateway import RayGateway, wait_for
from tests.ray.head import RayHead

pytestmark = pytest.mark.slow
TWO_NODES = {"num_gpus": 0, "num_nodes": 2}


def train_workers(head: RayHead) -> list[dict[str, Any]]:
    """Ray Train's worker actors, live and dead (Ray's state API, through the job server)."""
    answer = httpx.get(f"{head.address}/api/v0/actors", timeout=30,
                       headers={"Authorization": f"Bearer {head.token}"},
                       params={"detail": "1", "limit": "1000", "filter_keys": "class_name",
                               "filter_predicates": "=", "filter_values": "RayTrainWorker"})
    return list(answer.json()["data"]["result"]["result"])


def kill_a_rank(head: RayHead, submission_id: str) -> None:
    """SIGKILL one Ray Train worker of the job, as the OOM killer would."""
    job = ray_client(head).get_job_info(submission_id).job_id
    pids = sorted(a["pid"] for a in train_workers(head)
                  if a["job_id"] == job and a["state"] == "ALIVE")
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGKILL)


def test_two_node_jobs_through_ray_train_finish_stop_fail_and_cancel_while_placed(
    ray_head: RayHead, tiny_model: Path, facts_files: tuple[Path, Path], tmp_path: Path,
) -> None:
    if ray_head.alive_nodes() < 2:
        ray_head.add_node(num_cpus=3)
    with RayGateway(ray_head, tiny_model, facts_files[0], tmp_path) as gateway:
        done_id = gateway.start(6, TWO_NODES)
        cancel_id = gateway.start(400, TWO_NODES)
        killed_id = gateway.start(400, TWO_NODES)
        # Three ranks, one per node, on two nodes: Ray Train waits for a third node.
        waiting_id = gateway.start(6, {"num_gpus": 0, "num_nodes": 3})

        wait_for(lambda: any(e["message"].startswith("Ray Train: placing 3 workers")
                             for e in gateway.get(waiting_id, "/events")["data"]),
                 120, "the driver of the job that cannot be placed")
        # Its driver runs, its workers wait: queued to the user, and no running time counted.
        waiting_now = gateway.get(waiting_id)
        assert (waiting_now["status"], waiting_now["started_at"]) == ("queued", None)
        gateway.cancel(waiting_id)
        wait_for(lambda: len(gateway.get(cancel_id, "/metrics")["data"]) >= 2, 240,
                 "metrics of the job to cancel")
        gateway.cancel(cancel_id)
        wait_for(lambda: len(gateway.get(killed_id, "/metrics")["data"]) >= 2, 240,
                 "metrics of the job that loses a rank")
        kill_a_rank(ray_head, killed_id)
        ids = (done_id, cancel_id, waiting_id, killed_id)
        wait_for(lambda: [gateway.get(j)["status"] for j in ids]
                 == ["succeeded", "cancelled", "cancelled", "failed"], 240, "all jobs settled")
        done, cancelled, waiting, killed = (gateway.get(j) for j in ids)
        done_metrics = gateway.get(done_id, "/metrics")["data"]
        events = gateway.get(done_id, "/events")["data"]

    assert [m["step"] for m in done_metrics] == list(range(1, 7))  # rank 0's, once per step
    result = done["result"]
    assert (result["world_size"], result["distributed_backend"]) == (2, "gloo")
    assert [(r["rank"], r["global_step"]) for r in result["ranks"]] == [(0, 6), (1, 6)]
    assert len(list(Path(result["run_dir"]).rglob("adapter_config.json"))) == 1
    launched = next(e["message"] for e in events if e["message"].startswith("submitted"))
    assert "Ray Train: 2 workers over 2 nodes, STRICT_SPREAD, on CPU" in launched
    for once in ("loading ", "training: ", "adapter saved", "run succeeded"):  # rank 0 only
        assert sum(e["message"].startswith(once) for e in events) == 1, (once, events)

    assert cancelled["result"]["reason"].startswith("cancelled after step")
    stops = {r["stopped_at"] for r in cancelled["result"]["ranks"]}
    assert len(stops) == 1 and None not in stops, cancelled["result"]["ranks"]
    assert Path(cancelled["result"]["adapter_path"], "adapter_config.json").exists()
    assert waiting["result"]["reason"] == "cancelled while Ray placed its 3 workers"
    # No retry (max_failures 0): the job fails, naming the rank whose process died first.
    assert re.match(r"rank [01] of 2 failed first: Ray Train worker failed: ActorDiedError",
                    killed["error"]["message"]), killed["error"]

    ray = ray_client(ray_head)
    infos = {j: wait_for(lambda j=j: (i := ray.get_job_info(j)).status.is_terminal() and i, 60,
                         f"Ray's record of {j}") for j in ids}
    assert [str(infos[j].status) for j in ids] == ["SUCCEEDED", "STOPPED", "STOPPED", "FAILED"]
    assert "backends.local.ray_train --run-dir" in infos[done_id].entrypoint
    assert "--num-workers 2 --gpus-per-worker 0 --placement STRICT_SPREAD" in \
        infos[done_id].entrypoint
    for job in (done_id, cancel_id, killed_id):  # a rank on each node
        assert len({a["node_id"] for a in train_workers(ray_head)
                    if a["job_id"] == infos[job].job_id}) == 2
