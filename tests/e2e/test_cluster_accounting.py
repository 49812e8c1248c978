"""Issue 26 on a real accounting database and real GPUs: the spawn form's accounts, QOS and GPU
types on cluster ``current`` (Slurm 26.05; scripts/cluster/accounting.sh).

``current`` has slurmdbd on MariaDB (accounts ``physics``: QOS normal, alice's default; ``chem``:
QOS long only; alice in both, bob in none) and n2 with two GPUs ``gpu:a100`` (partitions debug =
n1+n2, gpu = n2, cpu = n1). One hub for the module, with one profile on ``current`` reached over
ssh through its login node (as tests/e2e/test_cluster_current.py), whose form has partition,
account, QOS, GPU type and GPU count fields:

1. the form offers exactly alice's accounts and each account's QOS, as the real ``sacctmgr``
   lists them; bob (no association) is offered the defaults only;
2. the gpu partition's option says ``a100:2``, cpu's says no GPU; the GPU type offered is a100;
3. a spawn with account chem, QOS long, a100 x 1 reaches ready, and the controller's job has that
   account, QOS and GPU TRES; then an administrator's ``scancel``: the hub says it was cancelled,
   and ``sacct`` (now answering) lists the finished job with the same account, QOS, TRES and end;
4. an account alice does not have, a QOS her account does not allow, a GPU type the partition
   lacks, 3 GPUs: each HTTP 400 naming the field, and nothing is submitted;
5. a second cluster in the same accounting database (``jhpcother``, registered for this module
   only) where alice has account ``astro``: sacctmgr without ``cluster=`` lists it, but the form on
   ``current`` does not offer it and a spawn naming it is 400 (the facts ask ``cluster=current``,
   the name from ``scontrol show config``).
"""

from __future__ import annotations

import html
import re
import time

import clustertools
import pytest
from test_cluster_current import NODE_CMD, WEB_CONFIG, current, wait_job_gone  # noqa: F401 (fixture)

from batchspawner.hub.sessions import ended_record

CONFIG = clustertools.PROFILES_HUB + """
c.ProfilesSpawner.cluster_wait = 10
c.ProfilesSpawner.profiles = [
    {{'key': 'current', 'display': 'Cluster current (Slurm 26.05)', 'class': 'batchspawner.MultiSlurmSpawner',
      'config': {{'exec_prefix': {prefix!r}, 'batchspawner_singleuser_cmd': {node_cmd!r},
                 'daemon_resolver': {resolver!r}}},
      'fields': {{'partition': {{'type': 'choice', 'choices': {{'debug': 'debug', 'gpu': 'gpu', 'cpu': 'cpu'}},
                                'default': 'debug'}},
                 'account': {{'type': 'account'}}, 'qos': {{'type': 'qos'}},
                 'gpu_type': {{'type': 'gpu_type'}},
                 'ngpus': {{'type': 'int', 'min': 0, 'max': 4, 'default': 0}}}}}},
]
"""


OTHER = [  # another cluster of the accounting database, and alice's association there (sacctmgr -i, root on ctl)
    ["add", "cluster", "jhpcother"],
    ["add", "account", "astro", "cluster=jhpcother"],
    ["add", "user", "alice", "account=astro", "cluster=jhpcother"],
]


@pytest.fixture(scope="module")
def other_cluster(current):
    for argv in OTHER:
        current.run("ctl", ["sacctmgr", "-i", *argv], check=False)  # "nothing new added" on a rerun
    yield "jhpcother"
    current.run("ctl", ["sacctmgr", "-i", "delete", "user", "alice", "account=astro", "cluster=jhpcother"], check=False)
    current.run("ctl", ["sacctmgr", "-i", "delete", "account", "astro"], check=False)
    current.run("ctl", ["sacctmgr", "-i", "delete", "cluster", "jhpcother"], check=False)


@pytest.fixture(scope="module")
def hub(current, other_cluster, tmp_path_factory, jupyterhub_version):
    hub = clustertools.cluster_hub(current, CONFIG + WEB_CONFIG, tmp_path_factory.mktemp("hub-accounting"),
                                   node_cmd=NODE_CMD).start()  # fmt: skip
    yield hub
    clustertools.finish_hub(hub, "cluster-accounting", [current])


def real_assoc(cluster, user, where=()):
    """{account: [QOS]} as the real sacctmgr on the login node lists them for ``user`` (``where``:
    e.g. ``["cluster=current"]``; without, every cluster of the accounting database)."""
    out = cluster.run("login", ["sacctmgr", "-nP", "show", "assoc", f"user={user}", *where, "format=account,qos"],
                      user=user).stdout  # fmt: skip
    return {a: sorted(q.split(",")) for a, _, q in (line.partition("|") for line in out.splitlines() if line)}


def select_options(page: str, name: str) -> dict[str, dict]:
    """{value: attributes} of the options of the form's ``<select name=NAME>``."""
    match = re.search(rf'<select[^>]*name="{re.escape(name)}"[^>]*>(.*?)</select>', page, re.S)
    assert match, f"no select {name} in the form"
    out = {}
    for attrs in re.findall(r"<option([^>]*)>", match.group(1)):
        found = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', attrs)}
        out[found.get("value", "")] = found
    return out


def spawn_form(hub, user, server):
    form = hub.login_session(user).get(f"{hub.url}/hub/spawn/{user}/{server}", timeout=60)
    assert form.status_code == 200, form.text[:500]
    assert "hpc-facts-unknown" not in form.text, "the form says the cluster's facts are not known"
    return form.text


def submitted(hub) -> int:
    return len(re.findall(r"Job \d+ submitted", hub.log_text()))


def test_form_offers_alices_own_accounts_qos_and_the_partitions_gpus(current, hub):
    everywhere = real_assoc(current, "alice")  # the other cluster's astro too (fixture other_cluster)
    assert set(everywhere) == {"astro", "chem", "physics"}, everywhere
    assoc = real_assoc(current, "alice", ["cluster=current"])
    assert assoc == {"chem": ["long"], "physics": ["normal"]}, assoc  # scripts/cluster/accounting.sh
    page = spawn_form(hub, "alice", "formcheck")
    accounts = select_options(page, "current.account")
    assert set(accounts) == {"", *assoc}, accounts  # "" = her default account
    for account, qos in assoc.items():  # each account's own QOS (formfacts.js narrows the QOS list with it)
        assert accounts[account]["data-qos"].split() == qos, accounts
    assert set(select_options(page, "current.qos")) == {"", "long", "normal"}
    partitions = select_options(page, "current.partition")
    assert partitions["gpu"]["data-max-gpus"] == "a100:2", partitions
    assert partitions["cpu"]["data-max-gpus"] == "", partitions
    gpu_types = select_options(page, "current.gpu_type")
    assert set(gpu_types) == {"", "a100"}, gpu_types
    assert "gpu" in gpu_types["a100"]["data-partitions"].split() and "cpu" not in gpu_types["a100"]["data-partitions"]
    # bob has no association: the defaults only (no other user's accounts)
    bob = spawn_form(hub, "bob", "formcheck")
    assert set(select_options(bob, "current.account")) == {""}
    assert set(select_options(bob, "current.qos")) == {""}


@pytest.mark.parametrize("options, field", [
    ({"partition": "gpu", "account": "biology"}, "account"),  # not one of alice's accounts
    ({"partition": "gpu", "account": "astro"}, "account"),  # hers on another cluster, not on current
    ({"partition": "gpu", "account": "chem", "qos": "normal"}, "qos"),  # chem allows long only
    ({"partition": "cpu", "gpu_type": "a100", "ngpus": "1"}, "gpu_type"),  # cpu (n1) has no GPU
    ({"partition": "gpu", "gpu_type": "a100", "ngpus": "3"}, "ngpus"),  # n2 has 2
])  # fmt: skip
def test_a_choice_outside_the_real_facts_is_400_and_nothing_is_submitted(current, hub, options, field):
    before, jobs = submitted(hub), set(current.live_jobs("alice"))
    r = hub.api("POST", "/users/alice/servers/refused", json={"profile": "current", **options})
    assert r.status_code == 400 and field in r.text, (options, r.status_code, r.text[:300])
    assert hub.wait_stopped("alice", "refused", timeout=20)
    assert submitted(hub) == before and set(current.live_jobs("alice")) == jobs
    assert "Traceback" not in hub.log_text()


def test_chem_long_a100_spawn_runs_with_that_account_qos_and_tres_and_sacct_has_it(current, hub):
    options = {"profile": "current", "partition": "gpu", "account": "chem", "qos": "long",
               "gpu_type": "a100", "ngpus": "1"}  # fmt: skip
    r, seconds = hub.spawn("alice", options, server="gpu")
    assert r.status_code in (201, 202), r.text
    model = hub.server_model("alice", "gpu")
    assert model and model["ready"], hub.log_tail()
    job_id = model["state"]["child_state"]["job_id"]
    # the controller's own view of the job
    job = current.run("ctl", ["scontrol", "-o", "show", "job", job_id]).stdout
    fields = dict(re.findall(r"(\w+)=(\S*)", job))
    assert (fields["Account"], fields["QOS"], fields["Partition"]) == ("chem", "long", "gpu"), job
    assert fields["NodeList"] == "n2" and "gres/gpu:a100=1" in fields["AllocTRES"], job
    assert hub.user_request("alice", "api", server="gpu").status_code == 200
    print(f"current: chem/long/a100 submit->ready {seconds:.2f} s (job {job_id})")
    # an administrator ends it outside the hub: the hub notices and says how it ended
    current.run("ctl", ["scancel", job_id])
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and hub.server_model("alice", "gpu") is not None:
        time.sleep(0.5)
    assert hub.server_model("alice", "gpu") is None, hub.log_tail()
    assert wait_job_gone(current, job_id)
    user = hub.api("GET", "/users/alice", params={"include_stopped_servers": "1"}).json()
    state = user["servers"]["gpu"]["state"]
    ended = state.get("last_ended") or state.get("child_state", {}).get("last_ended") or {}
    assert ended.get("job_id") == job_id and ended.get("state") == "CANCELLED", state
    # sacct answers now (slurmdbd): the finished job, as alice sees it on the login node; its
    # state word is the one the hub recorded (ended_record reads sacct's "CANCELLED by UID" too)
    row = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not row.startswith(f"{job_id}|"):
        row = current.run("login", ["sacct", "-nP", "-X", "-j", job_id, "-o",
                                    "JobID,Account,QOS,Partition,State,ExitCode,AllocTRES,End"],
                          user="alice").stdout.strip()  # fmt: skip
        time.sleep(0.5)
    jid, account, qos, partition, native, exit_code, tres, end = row.split("|")
    assert (account, qos, partition) == ("chem", "long", "gpu"), row
    assert native.startswith("CANCELLED") and ended_record(job_id, native)["state"] == ended["state"], row
    assert "gres/gpu:a100=1" in tres and re.fullmatch(r"\d+:\d+", exit_code) and end not in ("", "Unknown"), row
