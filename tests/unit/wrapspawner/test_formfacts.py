"""Forms that know the cluster (issue 26): partition maxima for the browser, GPU types from the
partition's GRES, accounts and QOS from the user's associations, the first form's bounded wait.

Injected runner only (fast tier). sinfo's output is real (captured here) where this host has it;
GRES with GPUs and sacctmgr's associations are real-format fixtures (no GPUs and no slurmdbd here).
"""

from __future__ import annotations

import asyncio
import re

import pytest
from fakes import FakeRunner, Reply, fixture
from wraphelpers import make_wrapper

from batchspawner import SlurmSpawner
from batchspawner.polling.cluster import ClusterInfo, parse_assoc, parse_sinfo_cpus, parse_sinfo_gres
from batchspawner.core.options import OptionError
from wrapspawner import ProfilesSpawner
from wrapspawner import formfacts

SCONTROL = fixture("slurm/scontrol_partitions.txt")
SINFO_REAL = fixture("slurm/sinfo_gres_real.txt")
SINFO_GPUS = fixture("slurm/sinfo_gres_gpus.txt")
ASSOC = fixture("slurm/sacctmgr_assoc_account_qos.txt")
NO_DB = fixture("slurm/sacctmgr_no_db.stderr")
GPU_SCONTROL = SCONTROL + (
    "PartitionName=gpu State=UP MaxTime=1-00:00:00 MaxCPUsPerNode=16 MaxMemPerNode=65536 TotalNodes=2\n"
    "PartitionName=old State=UP MaxTime=02:00:00 MaxCPUsPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TotalNodes=1\n"
)


def responder(sinfo=SINFO_REAL, assoc=ASSOC, scontrol=SCONTROL):
    def respond(argv, stdin):
        if argv[:2] == ["scontrol", "show"]:
            return Reply(stdout=scontrol)
        if argv[0] == "sinfo":
            return Reply(stdout=sinfo)
        if argv[0] == "sacctmgr":
            return Reply(stdout=assoc) if assoc is not None else Reply(returncode=1, stderr=NO_DB)
        raise AssertionError(argv)

    return respond


PARTS = {"debug": "debug", "jhpc-small": "jhpc-small", "gpu": "gpu", "old": "old"}
PROFILES = [{
    "key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner",
    "fields": {
        "partition": {"type": "choice", "choices": PARTS, "default": "jhpc-small"},
        "nprocs": {"type": "int", "min": 1, "max": 8, "default": 1, "label": "Cores <b>"},
        "memory": {"type": "memory", "min": "512M", "max": "8G", "default": "1G"},
        "runtime": {"type": "walltime", "max": "08:00:00", "default": "01:00:00"},
        "ngpus": {"type": "int", "min": 0, "max": 8, "default": 0},
        "gpu_type": {"type": "gpu_type"},
        "account": {"type": "account"},
        "qos": {"type": "qos"},
    },
}]


def install(runner) -> ClusterInfo:
    info = ClusterInfo._registry["slurm"] = ClusterInfo(runner=runner)
    return info


# ------------------------------------------------------------------ parsers (real formats)
def test_gres_parsed_per_partition_as_max_per_node_per_type():
    assert parse_sinfo_gres(SINFO_REAL) == {"debug": {}, "jhpc-small": {}}
    assert parse_sinfo_gres(SINFO_GPUS) == {"gpu": {"a100": 4, "v100": 2}, "old": {"": 2}, "cpu": {}}
    # the CPU column of several lines of one partition adds up (sinfo splits a partition by GRES)
    assert parse_sinfo_cpus(SINFO_GPUS)["gpu"] == (184, 192)
    assert parse_sinfo_cpus(SINFO_REAL) == {"debug": (160, 160), "jhpc-small": (160, 160)}


def test_associations_parsed_account_to_qos():
    assert parse_assoc(ASSOC) == {"proj042": {"normal", "long"}, "chem-lab": {"normal", "gpu-high"}, "teaching": set()}
    assert parse_assoc("proj001\nproj042\n") == {"proj001": set(), "proj042": set()}  # format=account only
    assert parse_assoc("bad name|x\n") == {}  # never a value that is not plain


async def test_associations_query_is_an_argv_cached_and_absent_without_slurmdbd():
    runner = FakeRunner(responder())
    info = ClusterInfo(runner=runner)
    assert await info.user_associations("dave") == parse_assoc(ASSOC)
    await info.user_associations("dave")
    assert [c.argv for c in runner.calls] == [  # the default cluster's name first (none in this answer)
        ["scontrol", "show", "config"], ["sacctmgr", "-nP", "show", "assoc", "user=dave", "format=account,qos"]]
    assert await info.user_accounts("dave") == ["chem-lab", "proj042", "teaching"]
    assert await ClusterInfo(runner=FakeRunner(responder(assoc=None))).user_associations("dave") is None


# ------------------------------------------------------------------ the form
async def test_form_carries_partition_maxima_hints_and_an_external_script_only():
    install(FakeRunner(responder()))
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES)
    form = await wrapper.get_options_form()
    # every partition option says its maxima for the browser
    small = re.search(r'<option value="jhpc-small"[^>]*>', form).group(0)
    assert 'data-max-cores="2"' in small and 'data-max-time="14400"' in small
    debug = re.search(r'<option value="debug"[^>]*>', form).group(0)
    assert "data-max-cores" not in debug and "data-max-time" not in debug
    # inputs name what caps them; the chosen partition's maximum is a visible hint already
    nprocs = re.search(r'<input[^>]*name="custom.nprocs"[^>]*>', form).group(0)
    assert 'data-hpc-limit="cores"' in nprocs and 'data-hpc-max="8"' in nprocs
    assert 'data-hpc-label="Cores &lt;b&gt;"' in nprocs  # escaped
    assert "max 2 cores on jhpc-small" in form and "max 4 h on jhpc-small" in form
    # no inline script (JupyterHub's CSP may forbid it): one external, same-origin script
    scripts = re.findall(r"<script[^>]*>", form)
    assert scripts and all(re.search(r'src="/hub/hpc/formfacts\.js\?v=[0-9a-f]+"', s) for s in scripts), scripts
    assert re.search(r"\son[a-z]+=", form) is None  # no inline event handlers either


async def test_form_offers_the_users_accounts_qos_and_the_partitions_gpu_types():
    install(FakeRunner(responder(sinfo=SINFO_GPUS, scontrol=GPU_SCONTROL)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES)
    form = await wrapper.get_options_form()
    account = re.search(r'<select[^>]*name="custom.account".*?</select>', form, re.S).group(0)
    assert re.findall(r'value="([^"]*)"', account) == ["", "chem-lab", "proj042", "teaching"]
    assert re.search(r'<option value="proj042"\s+data-qos="long normal"', account)  # the QOS follow the account
    qos = re.search(r'<select[^>]*name="custom.qos".*?</select>', form, re.S).group(0)
    assert re.findall(r'value="([^"]*)"', qos) == ["", "gpu-high", "long", "normal"]
    gpu = re.search(r'<select[^>]*name="custom.gpu_type".*?</select>', form, re.S).group(0)
    assert re.findall(r'value="([^"]*)"', gpu) == ["", "a100", "v100"]
    assert re.search(r'<option value="a100"\s+data-partitions="gpu"', gpu)
    opt = re.search(r'<option value="gpu"[^>]*>', form).group(0)
    assert 'data-max-gpus="a100:4 v100:2"' in opt and 'data-max-mem="67108864"' in opt


async def test_server_refuses_values_outside_associations_and_gres_naming_the_field():
    install(FakeRunner(responder(sinfo=SINFO_GPUS, scontrol=GPU_SCONTROL)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES)

    async def refused(**options):
        with pytest.raises(OptionError) as err:
            await wrapper.validate_options({"profile": "custom", **options})
        return err.value

    assert (await refused(account="physics")).field == "account"
    err = await refused(account="proj042", qos="gpu-high")
    assert err.field == "qos" and "proj042" in str(err)
    assert (await refused(partition="old", gpu_type="a100", ngpus="1")).field == "gpu_type"
    err = await refused(partition="gpu", gpu_type="a100", ngpus="5")
    assert err.field == "ngpus" and "at most 4" in str(err)
    assert (await refused(partition="gpu", gpu_type="v100", ngpus="3")).field == "ngpus"
    assert (await refused(partition="jhpc-small", nprocs="3")).field == "nprocs"
    _, values = await wrapper.validate_options(
        {"profile": "custom", "partition": "gpu", "gpu_type": "a100", "ngpus": "4", "account": "proj042", "qos": "long"})
    assert (values["gpu_type"], values["account"], values["qos"]) == ("a100", "proj042", "long")
    _, values = await wrapper.validate_options({"profile": "custom", "partition": "old", "ngpus": "2"})
    assert values["gpu_type"] == "" and values["account"] == ""


async def test_without_accounting_only_the_default_account_is_accepted():
    install(FakeRunner(responder(assoc=None)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES)
    form = await wrapper.get_options_form()
    account = re.search(r'<select[^>]*name="custom.account".*?</select>', form, re.S).group(0)
    assert re.findall(r'value="([^"]*)"', account) == [""]
    with pytest.raises(OptionError) as err:
        await wrapper.validate_options({"profile": "custom", "account": "proj042"})
    assert err.value.field == "account" and "cannot be checked" in str(err.value)
    await wrapper.validate_options({"profile": "custom"})


async def test_gpu_type_reaches_the_script_as_gpus_type_count():
    wrapper = make_wrapper(SlurmSpawner, req_ngpus="2", req_gpu_type="a100",
                           batchspawner_singleuser_cmd="/opt/v/bin/batchspawner-singleuser")
    assert "#SBATCH --gpus=a100:2" in wrapper.render_script().splitlines()


def test_association_fields_set_only_their_own_admin_trait():
    from wrapspawner.profiles import parse_profile

    with pytest.raises(ValueError, match="req_account"):
        parse_profile({"key": "k", "class": "batchspawner.SlurmSpawner",
                       "fields": {"account": {"type": "account", "trait": "req_reservation"}}})
    with pytest.raises(ValueError, match="admin only"):  # a free text field still may not
        parse_profile({"key": "k", "class": "batchspawner.SlurmSpawner",
                       "fields": {"account": {"type": "text", "regex": "[a-z]+"}}})


# ------------------------------------------------------------------ the first form after a hub start
async def test_a_hanging_scheduler_delays_the_first_form_at_most_the_bound_and_the_form_says_so():
    install(FakeRunner(lambda argv, stdin: Reply(stdout="", delay=30)))
    wrapper = make_wrapper(ProfilesSpawner, profiles=PROFILES, cluster_wait=0.1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    form = await wrapper.get_options_form()
    assert loop.time() - t0 < 1.0
    assert "hpc-facts-unknown" in form and "not known yet" in form
    t0 = loop.time()
    await wrapper.validate_options({"profile": "custom", "partition": "jhpc-small", "nprocs": "8"})
    assert loop.time() - t0 < 1.0  # nothing known: the scheduler judges at submission
    with pytest.raises(OptionError) as err:  # an account cannot be checked without an answer: refused
        await wrapper.validate_options({"profile": "custom", "account": "proj042"})
    assert err.value.field == "account" and loop.time() - t0 < 1.5
    ClusterInfo._registry["slurm"]._task.cancel()
    for task in list(formfacts._asking.values()):
        task.cancel()


def test_default_bound_is_short():
    assert ProfilesSpawner.class_traits()["cluster_wait"].default_value <= 3


async def test_a_slurm_profiles_spawner_made_at_hub_start_starts_the_facts_query():
    runner = FakeRunner(responder())
    info = install(runner)
    make_wrapper(ProfilesSpawner, profiles=PROFILES)  # the hub makes its users' spawners at start
    await asyncio.sleep(0.05)
    assert info.updated_at and [c.argv[0] for c in runner.calls][:2] == ["scontrol", "sinfo"]


def test_script_route_registered_and_source_served():
    from jupyterhub import handlers as hub_handlers

    assert any(route == formfacts.ROUTE for route, *_ in hub_handlers.default_handlers)
    source = formfacts.script_source()
    assert "setCustomValidity" in source and "innerHTML" not in source and "eval(" not in source
