"""A three-node Ray cluster on this machine, run as its own process by tests/test_cluster.py.

Head: no CPUs, so no trial lands there. Two workers: 2 CPUs and 1 GPU each, declared (the
GPUs do not exist). It lives in its own process because `ray.cluster_utils.Cluster` started
inside the pytest process points that process's Ray internals (its internal KV client) at
the new cluster's GCS: once the cluster is gone, the suite's own local Ray (`ray_session`)
fails with "Failed to connect to GCS" and takes pytest down with it.

Protocol on stdout/stdin: one JSON line {"address": HOST:PORT, "workers": [node ids]} once
every node is up; then `kill N` SIGKILLs every process of worker N (answered `killed N`);
`stop` or end of input tears the cluster down.
"""
from __future__ import annotations

import json
import sys


def main() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address, "workers": [w.node_id for w in workers]}), flush=True)
        for line in sys.stdin:
            command = line.split()
            if command[:1] == ["kill"]:
                cluster.remove_node(workers[int(command[1])], allow_graceful=False)
                print(f"killed {command[1]}", flush=True)
            elif command[:1] == ["stop"]:
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
