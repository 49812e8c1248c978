"""A node failure under a ready server, on the real multi-node cluster ``current`` (issue 24).

Slurm 26.05 on the namespaced machines ctl, n1, n2 and login (scripts/cluster/); the hub reaches
the cluster only through the login node, as in test_cluster_current.py. The node a ready server's
job runs on is set DOWN on the controller:

- default (``follow_requeue``): Slurm requeues the job (JobRequeue=1). The hub removes the route
  within seconds of the job showing pending, the spawn progress says the job went back in the
  queue, and the rerun, which can only land on the other node, is routed again at that node's
  own address.
- ``follow_requeue = False`` (the script asks ``--no-requeue``): the job ends NODE_FAIL and the hub
  drops the server with the node failure named; no job is left.

The node is resumed afterwards (also on failure) so the other cluster tests keep two nodes. The
cluster's slurm.conf says ReturnToService=2, so a node set DOWN whose slurmd still answers is back
in service about a second later; the rerun is kept off it (ExcNodeList), as a node that really
failed would keep it off. Only this test's own jobs are cancelled (other tests use the same users).
"""

from __future__ import annotations

import re
import time

import clustertools

from e2e.test_cluster_current import CONFIG, NODE_CMD, current, route_target, routes  # noqa: F401 (fixture)
from e2e.test_life_events import progress_messages, wait_for

USER = "bob"  # other cluster tests may use bob too: only this test's own job ids are cancelled


def make_hub(cluster, workdir, extra=""):
    return clustertools.cluster_hub(cluster, CONFIG + extra.replace("{", "{{").replace("}", "}}"), workdir,
                                    node_cmd=NODE_CMD)  # fmt: skip


def finish(cluster, hub, node, log_name, job_ids):
    """Resume the node, stop the hub, keep its log, cancel this test's jobs still alive."""
    try:
        if node:
            cluster.run("ctl", ["scontrol", "update", f"nodename={node}", "state=resume"], check=False)
    finally:
        clustertools.finish_hub(hub, log_name.removesuffix(".log"), [cluster], user=USER, only=job_ids)


def job_row(cluster, job_id):
    return {j[0]: j for j in cluster.jobs(USER)}.get(job_id)


def node_state(cluster, node):
    return cluster.run("ctl", ["sinfo", "-h", "-N", "-n", node, "-o", "%T"]).stdout.strip()


def ready_on_a_node(cluster, hub, job_ids):
    """A ready server of USER; (job id, its node, the route's target). The job id goes in ``job_ids``."""
    r, _ = hub.spawn(USER)
    model = hub.server_model(USER)
    job_id = ((model or {}).get("state") or {}).get("job_id")
    if job_id:
        job_ids.append(job_id)
    assert r.status_code in (201, 202), r.text
    assert model and model["ready"], hub.log_tail()
    row = job_row(cluster, job_id)
    assert row and row[1] == "RUNNING" and row[2] in cluster.nodes, row
    target = route_target(hub, USER)
    assert target and target.startswith(f"http://{cluster.addr[row[2]]}:"), (target, routes(hub))
    assert hub.user_request(USER, "api").status_code == 200
    return job_id, row[2], target


def node_down(cluster, node):
    cluster.run("ctl", ["scontrol", "update", f"nodename={node}", "state=down", "reason=test"])
    return time.monotonic()


def test_node_down_requeues_then_the_rerun_is_routed_on_the_other_node(current, tmp_path, jupyterhub_version):
    hub = make_hub(current, tmp_path / "hub")
    hub.start()
    node, job_ids = None, []
    try:
        hub.ensure_user(USER)
        job_id, node, first_target = ready_on_a_node(current, hub, job_ids)
        other = next(n for n in current.nodes if n != node)
        t0 = node_down(current, node)
        # Slurm requeues the job (JobRequeue=1): the hub must unroute within seconds of it pending
        pending_at = gone_at = None
        deadline = t0 + 40
        while time.monotonic() < deadline and gone_at is None:
            row = job_row(current, job_id)
            if pending_at is None and row and row[1] == "PENDING":
                pending_at = time.monotonic()
            if route_target(hub, USER) is None:
                gone_at = time.monotonic()
            time.sleep(0.2)
        assert gone_at is not None, (f"route still {route_target(hub, USER)} 40 s after {node} went down; "
                                     f"job {job_row(current, job_id)}\n{hub.log_tail()}")  # fmt: skip
        row = job_row(current, job_id)
        assert row and row[1] == "PENDING", row  # requeued, not ended
        pending_at = pending_at or gone_at
        assert gone_at - pending_at < 5, (gone_at - pending_at, hub.log_tail())
        model = hub.server_model(USER)
        assert model is not None, "the hub dropped the server: it must follow the requeued job"
        assert model["pending"] == "spawn" and not model["ready"], model
        msgs = progress_messages(hub, USER)
        text = " ".join(msgs)
        assert "back in the queue" in text and "unsaved work" in text and job_id in text, msgs
        print(f"current: {node} DOWN -> route gone {gone_at - t0:.2f} s "
              f"(job seen pending after {pending_at - t0:.2f} s)")  # fmt: skip

        # the rerun: Slurm holds a requeued job back a while (start it now); the failed node stays
        # out of it (ReturnToService=2 would put the still answering node back at once)
        current.run("ctl", ["scontrol", "update", f"jobid={job_id}", "StartTime=now", f"ExcNodeList={node}"])
        ready = wait_for(lambda: (hub.server_model(USER) or {}).get("ready"), 60, 0.5)
        assert ready, (job_row(current, job_id), hub.log_tail())
        ready_at = time.monotonic()
        row = job_row(current, job_id)
        assert row and row[1] == "RUNNING" and row[2] == other, row
        target = route_target(hub, USER)
        assert target and target.startswith(f"http://{current.addr[other]}:"), (target, routes(hub))
        assert "127.0.0.1" not in target and "localhost" not in target, target
        assert target != first_target
        assert hub.user_request(USER, "api").status_code == 200
        assert hub.server_model(USER)["state"]["job_id"] == job_id
        assert "This server is not starting" not in hub.log_text()
        print(f"current: {node} DOWN -> ready again on {other} {ready_at - t0:.2f} s (job {job_id})")
        assert hub.stop_server(USER)
    finally:
        finish(current, hub, node, "cluster-life-events-requeue.log", job_ids)
    assert wait_for(lambda: "down" not in node_state(current, node), 20, 0.5), node_state(current, node)


def test_node_down_without_requeue_ends_the_server_naming_the_node_failure(current, tmp_path, jupyterhub_version):
    hub = make_hub(current, tmp_path / "hub", "c.SlurmSpawner.follow_requeue = False\n")
    hub.start()
    node, job_ids = None, []
    try:
        hub.ensure_user(USER)
        job_id, node, _ = ready_on_a_node(current, hub, job_ids)
        shown = current.run("ctl", ["scontrol", "show", "job", job_id]).stdout
        assert "Requeue=0" in shown, shown  # the script asked --no-requeue
        t0 = node_down(current, node)
        assert wait_for(lambda: hub.server_model(USER) is None, 40, 0.25), (job_row(current, job_id),
                                                                          hub.log_tail())  # fmt: skip
        seconds = time.monotonic() - t0
        assert route_target(hub, USER) is None
        row = job_row(current, job_id)
        assert row is None or row[1] == "NODE_FAIL", row
        assert not current.live_jobs(USER), current.jobs(USER)
        log = hub.log_text()
        assert re.search(rf"job {job_id} has ended \([^)\n]*NODE_FAIL", log), hub.log_tail()
        # what the user's pages are told: the saved ending of the stopped server names the node failure
        user = hub.api("GET", f"/users/{USER}", params={"include_stopped_servers": "1"}).json()
        ended = user["servers"][""]["state"].get("last_ended") or {}
        assert ended.get("state") == "NODE_FAIL" and ended.get("job_id") == job_id, user["servers"]
        print(f"current: {node} DOWN (--no-requeue) -> server dropped {seconds:.2f} s, job NODE_FAIL")
    finally:
        finish(current, hub, node, "cluster-life-events-norequeue.log", job_ids)
    assert wait_for(lambda: "down" not in node_state(current, node), 20, 0.5), node_state(current, node)
