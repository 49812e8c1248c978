"""Every Slurm script and command line the package emits is accepted by each Slurm version here.

The versions: the host's (Debian 12, 22.05), Debian trixie's (24.11) and Debian sid's (26.05), the
last two from the cached cluster roots (scripts/cluster/build-root.sh). Each rendered script goes
through that version's real ``sbatch --test-only`` and each query through its real ``squeue`` /
``scancel`` / ``scontrol``, with a slurm.conf whose controller nobody runs: Slurm parses every
option (command line and ``#SBATCH`` lines) before it contacts the controller, so an accepted
command ends with "Unable to contact slurm controller" and a refused option with its own error
(26.05: ``option '--get-user-env' doesn't allow an argument``).
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import clustertools
import pytest
from jupyterhub.objects import Hub

from batchspawner import MultiSlurmSpawner, SlurmSpawner
from batchspawner.commands.runner import split_command
from e2e.conftest import require


def _user(name="alice"):
    return SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/", base_url="/",
                           public_url=lambda *a, **k: "", spawners={}, server=None, kind="user")  # fmt: skip


def _spawner(cls, **traits):
    spawner = cls(user=_user(), hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
                  batchspawner_singleuser_cmd="/opt/jhpc/venv/bin/batchspawner-singleuser", **traits)  # fmt: skip
    spawner.api_token = "not-a-real-token"
    return spawner


# every request option a site or a user can set, with values each version must accept
ALL_OPTIONS = dict(
    req_partition="debug", req_qos="normal", req_gres="gpu:1", req_reservation="maint",
    req_account="physics", req_runtime="1:00:00", req_memory="2G", req_nprocs="2", req_ngpus="1",
    req_job_name="jupyterhub-test", req_options="--exclusive", req_keepvars_extra="MY_VAR",
    req_prologue="module load python", req_epilogue="echo done",
)  # fmt: skip


def emitted():
    """(label, argv, stdin) of every Slurm command the package emits, rendered as it emits them."""
    cases = []
    for cls in (SlurmSpawner, MultiSlurmSpawner):
        for label, traits in (("defaults", {}), ("all options", ALL_OPTIONS),
                              ("cluster", dict(ALL_OPTIONS, req_cluster="parsecheck"))):  # fmt: skip
            spawner = _spawner(cls, **traits)
            script = spawner.render_script()
            submit = split_command(spawner.batch_submit_cmd, **spawner.command_vars())
            cases.append((f"{cls.__name__} {label}: sbatch", ["sbatch", "--test-only", *submit[1:]], script))
            if label == "defaults":
                for trait in ("batch_query_cmd", "batch_status_cmd", "batch_details_cmd", "batch_queue_cmd",
                              "batch_confirm_cmd", "batch_cancel_cmd"):  # fmt: skip
                    template = getattr(spawner, trait)
                    variables = spawner.command_vars("4242") | {"job_ids": "4242,4243"}
                    cases.append((f"{cls.__name__} {trait}", split_command(template, **variables), None))
    # the profile form's partition facts (batchspawner/polling/cluster.py)
    cases.append(("ClusterInfo partitions", ["scontrol", "show", "partition", "-o"], None))
    cases.append(("ClusterInfo free CPUs and GRES", ["sinfo", "-h", "-o", "%R|%a|%C|%G"], None))
    return cases


CASES = emitted()


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    ok, why = clustertools.available()
    require(ok, why)
    return clustertools.slurm_targets(tmp_path_factory.mktemp("parsecheck"))


@pytest.mark.parametrize("version", ["host", "lts (trixie)", "current (sid)"])
def test_every_emitted_command_parses(targets, version):
    target = next((t for t in targets if t.label == version), None)
    require(target is not None, "the host's Slurm client is missing (scripts/setup-slurm.sh)")
    banner = clustertools.slurm_version(target)
    assert banner.startswith("slurm"), banner
    refused = []
    # at once: 26.05 retries the absent controller for 1-2 s per command
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda case: target.run(case[1], stdin=case[2]), CASES))
    for (label, argv, stdin), out in zip(CASES, answers):
        text = (out.stderr + out.stdout).strip()
        if out.returncode == 0 or not clustertools.CONTACT_FAILED.search(text):
            refused.append(f"{label}: {shlex.join(argv)}\n    -> exit {out.returncode}: {text[:300]}")
    assert not refused, f"{banner} refuses what the package emits:\n" + "\n".join(refused)
