"""Site-shaped batchspawner 1.3 / wrapspawner 1.0 configurations (tests/compat13/sites/) load and
render the script 1.3 rendered, except for the differences docs/migration.md lists.

Fast tier: no daemons. Each config is loaded as JupyterHub loads ``jupyterhub_config.py`` (a
traitlets ``Config`` from the file, with ``get_config()``); the spawner class it names is built
with that config around a minimal hub user, and its scheduler commands go to an injected runner
that records them (tests/fakes.py). The submit's stdin is the script this package submits.

"What 1.3 rendered" is batchspawner 1.3.0's documented rule, applied to the same spawner: every
``req_<name>`` trait as ``{name}`` (``keepvars_extra`` appended to ``keepvars``), ``{cmd}`` =
``batchspawner_singleuser_cmd``, ``cmd`` and ``get_args()`` joined with spaces, then every
``user_options`` key, passed to ``_get_batch_script(**subvars)`` (``batch_script`` formatted).
The one difference allowed is docs/migration.md's ``batch_script`` row: ``{cmd}`` is the same
words, each shell-quoted (1.3 joined them with spaces and let the job's shell split them).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from jupyterhub.objects import Hub
from traitlets import import_item
from traitlets.config.loader import PyFileConfigLoader

from batchspawner import BatchSpawnerBase
from batchspawner.core.options import validate_spawner_user_options
from batchspawner.core.templating import format_template
from fakes import FakeRunner, Reply

SITES = Path(__file__).parent / "sites"
HOME = "/home/alice"


class _User:
    def __init__(self, name):
        self.name = name
        self.escaped_name = name
        self.url = f"/user/{name}/"
        self.base_url = "/"
        self.spawners = {}
        self.server = None
        self.kind = "user"
        self.groups = []

    def public_url(self, *a, **k):
        return ""


def load_site(name):
    """The site's config, as JupyterHub loads jupyterhub_config.py."""
    return PyFileConfigLoader(f"{name}_config.py", path=str(SITES)).load_config()


def spawner_class(config):
    cls = config.JupyterHub.spawner_class
    return import_item(cls) if isinstance(cls, str) else cls


def answers(argv, stdin):
    if argv[0] in ("sbatch", "qsub", "bsub"):
        return Reply(stdout="4242\n" if argv[0] != "bsub" else "Job <4242> is submitted to queue <q>.\n")
    return Reply()


def plumb(spawner, runner):
    spawner.runner = spawner.query_runner = spawner.status_runner = runner
    spawner.api_token = "secret-token-value"
    spawner.req_homedir = HOME
    return spawner


def build(name, user="alice"):
    config = load_site(name)
    cls = spawner_class(config)
    hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
    return config, cls(user=_User(user), hub=hub, config=config)


async def render_13(spawner, user_options=None) -> tuple[str, str]:
    """(script, cmd) as batchspawner 1.3.0's submit_batch_script composed them (see module doc)."""
    subvars = {n[4:]: getattr(spawner, n) for n in spawner.trait_names() if n.startswith("req_")}
    if subvars.get("keepvars_extra"):
        subvars["keepvars"] += "," + subvars["keepvars_extra"]
    subvars["cmd"] = " ".join([spawner.batchspawner_singleuser_cmd] + list(spawner.cmd) + list(spawner.get_args()))
    subvars.update(user_options or {})
    if getattr(type(spawner), "_get_batch_script", None) in (None, getattr(BatchSpawnerBase, "_get_batch_script", None)):
        script = format_template(spawner.batch_script, **subvars)
    else:
        script = await spawner._get_batch_script(**subvars)
    return script, subvars["cmd"]


async def submit(spawner, user_values=None) -> str:
    runner = FakeRunner(responder=answers)
    plumb(spawner, runner)
    job_id = await spawner.submit_batch_script(user_values)
    assert job_id == "4242"
    (call,) = [c for c in runner.calls if c.argv[0] in ("sbatch", "qsub", "bsub")]
    return call.stdin


async def assert_same_as_13(spawner, user_values=None, user_options=None):
    """The submitted script equals 1.3's except that {cmd} is the same words, each shell-quoted."""
    ours = await submit(spawner, user_values)
    theirs, cmd_13 = await render_13(spawner, user_options if user_options is not None else user_values)
    cmd_ours = spawner.cmd_formatted_for_batch()
    assert cmd_ours in ours and cmd_13 in theirs
    assert ours.replace(cmd_ours, "<CMD>") == theirs.replace(cmd_13, "<CMD>")
    # the job's shell splits 1.3's {cmd} into the words this package quotes one by one
    assert shlex.split(cmd_ours) == shlex.split(cmd_13)
    return ours


SLURM_SITES = ["slurm_reqs", "string_cmd", "ssh_login", "batch_script_hook"]


@pytest.mark.parametrize("name", SLURM_SITES + ["torque", "lsf"])
async def test_site_config_renders_as_13(name):
    config, spawner = build(name)
    script = await assert_same_as_13(spawner)
    assert script.startswith("#!/bin/")


async def test_slurm_site_script_has_its_resources_and_prologue_lines():
    _, spawner = build("slurm_reqs")
    script = await assert_same_as_13(spawner)
    for line in ("#SBATCH --partition=debug", "#SBATCH --time=00:10:00", "#SBATCH --mem=256M",
                 "#SBATCH --comment=jupyterhub", "umask 0077", f"#SBATCH --chdir={HOME}"):
        assert line + "\n" in script
    assert "\nsrun " in script


async def test_string_cmd_site_runs_the_command_with_its_argument():
    _, spawner = build("string_cmd")
    script = await assert_same_as_13(spawner)
    line = next(x for x in script.splitlines() if x.startswith("srun "))
    words = shlex.split(line)
    i = words.index("/opt/jupyterhub-hpc/venv/bin/jupyterhub-singleuser")
    assert words[i + 1] == "--FileContentsManager.delete_to_trash=False"
    assert "--KernelSpecManager.ensure_native_kernel=False" in words


async def test_form_subclass_site_form_keys_reach_the_script():
    _, spawner = build("form_subclass")
    assert "name=\"other\"" in await spawner.get_options_form()
    options = spawner.run_options_from_form({"queue": ["long"], "runtime": ["3"], "other": ["proj42"], "_xsrf": ["t"]})
    assert options == {"queue": "long", "runtime": "03:00:00", "other": "proj42"}
    spawner.user_options = options
    values = validate_spawner_user_options(spawner)
    script = await assert_same_as_13(spawner, values, options)
    assert "#SBATCH --comment=project:proj42\n" in script
    assert "#SBATCH --partition=long\n" in script
    assert "export OMP_NUM_THREADS=1\nexport CENTRE_SCRATCH=/scratch/$USER\n" in script
    # the same keys sent raw through the REST API by someone whose form never ran: refused
    _, other = build("form_subclass", user="bob")
    other.user_options = {"other": "proj42"}
    with pytest.raises(Exception) as err:
        validate_spawner_user_options(other)
    assert getattr(err.value, "status_code", None) == 400 and "other" in str(err.value)


async def test_profiles_site_10_api_and_child_script():
    _, wrapper = build("profiles_4tuple")
    form = wrapper.options_form
    assert 'value="slurm1c"' in form and 'value="slurm2g"' in form and 'value="local"' in form
    assert wrapper.options_from_form({"profile": ["slurm2g"]}) == {"profile": "slurm2g"}
    wrapper.user_options = {"profile": "slurm2g"}
    child = wrapper.construct_child()
    assert type(child).__name__ == "SlurmSpawner" and child.req_partition == "gpu"
    script = await assert_same_as_13(child, None, {"profile": "slurm2g"})
    assert "#SBATCH --gres=gpu:1\n" in script and "#SBATCH --cpus-per-task=2\n" in script


async def test_ssh_login_site_query_reaches_the_login_node_as_in_13():
    """1.3 ran 'exec_prefix batch_query_cmd' through the hub's shell; ssh joined the words and
    the login node's shell parsed them again. The remote command here must parse to the same words."""
    _, spawner = build("ssh_login")
    runner = spawner.runner_policy.user_runner()
    assert runner.remote_shell
    from batchspawner.commands.runner import split_command

    argv = split_command(spawner.batch_query_cmd, **spawner.command_vars("4242"))
    full = runner.build_argv(argv)
    # 1.3: the hub's shell parses the whole line once, ssh sends the words after the destination
    line_13 = format_template(spawner.exec_prefix, **spawner.get_req_subvars()) + " " + format_template(
        spawner.batch_query_cmd, job_id="4242", **spawner.get_req_subvars())
    local_13 = shlex.split(line_13)
    dest = local_13.index("alice@login1.example.org")
    assert full[: dest + 1] == local_13[: dest + 1]
    assert shlex.split(full[-1]) == shlex.split(" ".join(local_13[dest + 1:]))
    assert shlex.split(full[-1])[-1] == "%T %B-144.example.org"


def test_every_site_config_is_tested():
    names = {p.name[: -len("_config.py")] for p in SITES.glob("*_config.py")}
    tested = set(SLURM_SITES) | {"torque", "lsf", "form_subclass", "profiles_4tuple"}
    assert names == tested
    assert len(names) >= 6
    assert os.path.exists(SITES / "README.md")
