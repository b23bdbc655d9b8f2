"""A real three-node Ray cluster on this machine (head + two workers), for the Ray runtime tests.

Nodes are real raylet processes (Ray's own `cluster_utils.Cluster`, which runs `ray start`'s code with
free ports), so killing a worker's raylet is a real node death. Kept small: 1 CPU and a 100 MB object
store per node, no dashboard.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECT_STORE = 100_000_000
# Every node, and so every container address the proxy dials, stays on loopback: tests never send
# traffic to the machine's other interfaces. Ray resolves 127.0.0.1 to the machine's routable address
# unless its "single machine" mode is on; the variable reaches the raylets and the server we start.
LOOPBACK = "127.0.0.1"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Worker resources: labels are custom resources (`region:<name>`, `accelerator_type:<TYPE>`).
WORKERS: dict[str, dict[str, Any]] = {
    "us-east": {"num_cpus": 1, "num_gpus": 1, "resources": {"region:us-east": 1, "accelerator_type:H100": 1}},
    "eu-west": {"num_cpus": 1, "resources": {"region:eu-west": 1}},
}


@dataclass
class RayCluster:
    cluster: Any
    node_root: Path
    workers: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_worker(self, name: str) -> None:
        self.workers[name] = self.cluster.add_node(
            object_store_memory=OBJECT_STORE, node_ip_address=LOOPBACK, **WORKERS[name]
        )
        self.cluster.wait_for_nodes()

    def kill_worker(self, name: str) -> str:
        """Kill the worker's raylet (and its workers) without a graceful drain; return its node id."""
        node = self.workers.pop(name)
        node_id = str(node.node_id)
        self.cluster.remove_node(node, allow_graceful=False)
        return node_id

    def node_ids(self) -> dict[str, str]:
        return {name: str(node.node_id) for name, node in self.workers.items()}


def start_cluster() -> Iterator[RayCluster]:
    from ray.cluster_utils import Cluster

    node_root = Path(tempfile.mkdtemp(prefix="shy-ray-", dir="/tmp"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": OBJECT_STORE,
            "node_ip_address": LOOPBACK,
            # Notice a dead node in about 2 s instead of 30.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
        },
    )
    ray_cluster = RayCluster(cluster, node_root)
    try:
        for name in WORKERS:
            ray_cluster.add_worker(name)
        yield ray_cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(node_root, ignore_errors=True)
