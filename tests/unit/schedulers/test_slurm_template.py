"""The default Slurm script holds only options every supported Slurm (22.05 .. 26.05) accepts.

The real check runs each version's own sbatch (tests/e2e/test_cluster_slurm_options.py); this
fast test pins the one option whose syntax changed: Slurm 25.05 removed the argument of
``--get-user-env`` (``--get-user-env=L`` -> "option '--get-user-env' doesn't allow an argument"),
while plain ``--get-user-env`` means a login-shell environment (mode L, the build default) on
22.05 and 24.11 and is what 25.05+ does.
"""

import re

from helpers import make_spawner

from batchspawner import MultiSlurmSpawner, SlurmSpawner

ALL = dict(
    req_partition="debug", req_qos="normal", req_gres="gpu:1", req_reservation="maint", req_account="physics",
    req_runtime="1:00:00", req_memory="2G", req_nprocs="2", req_ngpus="1", req_cluster="c2",
    req_options="--exclusive",
)  # fmt: skip


def _directives(cls, **traits):
    spawner = make_spawner(cls, batchspawner_singleuser_cmd="/opt/v/bin/batchspawner-singleuser", **traits)
    return [line for line in spawner.render_script().splitlines() if line.startswith("#SBATCH")]


def test_get_user_env_has_no_argument():
    for cls in (SlurmSpawner, MultiSlurmSpawner):
        for traits in ({}, ALL):
            lines = [d for d in _directives(cls, **traits) if "--get-user-env" in d]
            assert lines == ["#SBATCH --get-user-env"], (cls.__name__, lines)


def test_every_directive_is_one_long_option():
    # "#SBATCH --name=value" or "#SBATCH --flag": what all three versions parse the same way
    for line in _directives(SlurmSpawner, **ALL):
        assert re.fullmatch(r"#SBATCH --[a-z-]+(=\S+)?", line), line


def test_kept_1_3_script_with_get_user_env_argument_is_warned_once(caplog, monkeypatch):
    import batchspawner.schedulers.slurm as slurm

    monkeypatch.setattr(slurm, "_GET_USER_ENV_WARNED", False)
    old = "#!/bin/bash\n#SBATCH --get-user-env=L\n#SBATCH --partition={{partition}}\n{{cmd}}\n"
    with caplog.at_level("WARNING"):
        make_spawner(SlurmSpawner, batch_script=old)
        make_spawner(SlurmSpawner, batch_script=old)
    warnings = [r.getMessage() for r in caplog.records if "--get-user-env" in r.getMessage()]
    assert len(warnings) == 1 and "25.05" in warnings[0] and "plain '#SBATCH --get-user-env'" in warnings[0]


def test_plain_get_user_env_script_is_not_warned(caplog, monkeypatch):
    import batchspawner.schedulers.slurm as slurm

    monkeypatch.setattr(slurm, "_GET_USER_ENV_WARNED", False)
    with caplog.at_level("WARNING"):
        make_spawner(SlurmSpawner, batch_script="#!/bin/bash\n#SBATCH --get-user-env\n{{cmd}}\n")
        make_spawner(SlurmSpawner)
    assert not [r for r in caplog.records if "--get-user-env" in r.getMessage()]
