"""Hold a two-node Ray cluster on loopback until stdin closes (run by test_campaign_cluster).

The head has no CPU, the second node two. Prints one JSON line: the GCS address and the CPUs of
each node id. Loopback-only Ray refuses `ray start` of a second node, so both nodes are started
here with ``ray.cluster_utils.Cluster``, in a process whose environment set token auth and the
loopback settings before Ray was imported.
"""

from __future__ import annotations

import json
import sys

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "num_gpus": 0, "node_ip_address": "127.0.0.1",
                        "include_dashboard": False},
    )  # fmt: skip
    worker = cluster.add_node(num_cpus=2, num_gpus=0, node_ip_address="127.0.0.1")
    cpus = {cluster.head_node.node_id: 0, worker.node_id: 2}
    print(json.dumps({"address": cluster.address, "cpus": cpus}), flush=True)
    try:
        sys.stdin.read()  # until the test closes it
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
