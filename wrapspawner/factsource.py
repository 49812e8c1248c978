"""Which cluster a profile's form facts come from: the cluster its spawner asks, asked the same way.

The spawn form's partition facts and the user's associations (:class:`batchspawner.polling.cluster.ClusterInfo`)
belong to the cluster a profile's spawner submits to. A profile whose spawner reaches its cluster
over ssh (``exec_prefix = "ssh ... login"`` or ``submit_hosts``) must not show the hub host's
partitions, and two profiles on two clusters must not share facts. This module is the one place
that decides, for a profile, which :class:`ClusterInfo` serves it (:func:`cluster_info`, used by
:meth:`wrapspawner.ProfilesSpawner.cluster_info` and through it by every call site: the form per
profile, the server's limit checks, the association checks, the kick at start).

The rule follows the spawner's own runner policy (:class:`batchspawner.commands.policy.RunnerPolicy`):
the facts are asked by the runner and identity of the shared status query
(``status_endpoint()``: ``status_exec_prefix``, else ``submit_hosts`` as this user, else an ssh
``exec_prefix`` as this user, else the hub's own user, locally).

- The status runner runs locally (``runs_elsewhere`` is False): today's shared ``"slurm"`` key,
  ``scontrol``/``sinfo``/``sacctmgr`` as the hub's user with the hub's environment.
- It runs elsewhere: one ClusterInfo per ``("slurm", identity)`` (the identity as the status
  poller's key has it: runner kind, prefix argv, ssh user and hosts), using that runner and no
  variable of the hub's environment. Profiles and users that would run the same query as the same
  identity share it; a per-user ssh identity gives one per user. Such a task stops after
  ``REMOTE_IDLE_AFTER`` s without a form or check (the local one runs for the hub's life, as before)
  and forgets its facts then: the next form asks afresh, within ``cluster_wait``.
- A profile naming a cluster of a multi-cluster client (``req_cluster``, Slurm's ``--clusters``):
  that cluster's facts, asked by the same runner and identity (on this machine or over ssh) with
  ``--clusters=NAME`` / ``cluster=NAME`` in every query; one ClusterInfo per ``("slurm", identity,
  "--clusters=NAME")``, so two profiles on two clusters never share facts. A name that is not one
  Slurm cluster (a comma list, ``all``, anything but letters, digits, ``_``, ``-``) gets none.
- A profile whose spawner cannot say how it would ask: no facts (the form says they are not
  known, nothing is refused over limits, the scheduler judges at submission). Never another
  cluster's facts.

The endpoint of a profile is worked out once per wrapper (one spawner of that profile's class and
config, built but never started), not per render.
"""

from __future__ import annotations

import logging

from batchspawner.polling.cluster import ClusterInfo, cluster_name

LOCAL_KEY = "slurm"  # the hub's own Slurm, as the hub's user (tests/conftest.py fakes this key)
REMOTE_IDLE_AFTER = 1800.0  # a remote identity's task stops after 30 min without a form or check
_UNSET = object()
log = logging.getLogger("wrapspawner.factsource")

# hub objects a probe spawner does not need (it is built to read its runner policy, never started)
_PROBE_DROPS = ("orm_spawner", "db", "oauth_client_id", "server")


def facts_endpoint(child):
    """``(key, runner, env, cluster)`` of the facts queries for a spawner of the profile; None: no facts.

    ``runner``/``env`` are None for the local key (the registered local ClusterInfo's own);
    ``cluster`` is the ``req_cluster`` every query names ("" the client's default cluster)."""
    policy = getattr(child, "runner_policy", None)
    if policy is None or not hasattr(policy, "status_endpoint"):
        return (LOCAL_KEY, None, None, "")
    cluster = getattr(child, "req_cluster", "") or ""
    if cluster:
        cluster = cluster_name(cluster)  # ValueError: no facts (endpoint_of logs it)
    key, runner, env = policy.status_endpoint()
    if not cluster and not policy.runs_elsewhere(runner):
        return (LOCAL_KEY, None, None, "")
    key = (LOCAL_KEY, policy.identity_of(runner)) + ((f"--clusters={cluster}",) if cluster else ())
    return (key, runner, dict(env or {}), cluster)


def probe(wrapper, profile):
    """A spawner of ``profile``'s class and config as the wrapper would build it (never started)."""
    kwargs = wrapper.child_kwargs(profile.spawner_class, profile.config, {})
    for name in _PROBE_DROPS:
        kwargs.pop(name, None)
    return profile.spawner_class(**kwargs)


def endpoint_of(wrapper, profile):
    """:func:`facts_endpoint` of ``profile`` for this wrapper's user, worked out once per wrapper."""
    cache = wrapper.__dict__.setdefault("_facts_endpoints", {})
    found = cache.get(profile.key, _UNSET)
    if found is _UNSET:
        try:
            found = facts_endpoint(probe(wrapper, profile))
        except Exception as e:  # fail closed: no facts, never another cluster's
            log.warning("profile %r: cannot tell how its spawner asks the cluster (%s); its form shows no "
                        "partition facts", profile.key, str(e)[:200])
            found = None
        cache[profile.key] = found
    return found


def cluster_info(wrapper, profile):
    """The :class:`ClusterInfo` serving ``profile``'s form and checks; None when none may."""
    found = endpoint_of(wrapper, profile)
    if found is None:
        return None
    key, runner, env, cluster = found
    if key == LOCAL_KEY:
        return ClusterInfo.get()
    label = ", ".join(w for w in (f"cluster {cluster}" if cluster else "", where(runner)) if w)
    # a remote identity's task stops when unused (one per user for a per-user ssh identity); one per
    # configured cluster on this machine runs for the hub's life, as the default cluster's does
    idle = REMOTE_IDLE_AFTER if getattr(runner, "remote_shell", False) else None
    return ClusterInfo.get(key, runner=runner, env=env, label=label, idle_after=idle, cluster=cluster)


def where(runner) -> str:
    """Where a remote runner asks, for the log: its ssh destination(s), never its options or keys
    ("" on this machine)."""
    if not getattr(runner, "remote_shell", False):
        return ""
    hosts = [str(getattr(h, "host", h)) for h in (getattr(runner, "hosts", ()) or ())]
    if hosts:
        return "over ssh to " + ", ".join(hosts)
    prefix = list(getattr(runner, "prefix", ()) or ())
    return f"over {prefix[0].rsplit('/', 1)[-1]} to {prefix[-1]}" if len(prefix) > 1 else "elsewhere"
