"""Issue 25 items 3-7: what a 1.3 / wrapspawner 1.0 site's subclass or config does, and what it gets.

Each test is shaped like a site's own code (a spawner subclass, a jupyterhub_config.py line) and
checks the observable outcome: the script submitted, the words a command receives, the child a
wrapper builds. Commands run through an injected runner (tests/fakes.py) or, for the ssh quoting,
through a fake ``ssh`` (a shell script that runs its remote command with /bin/sh -c as sshd does).
"""

from __future__ import annotations

import shlex

import pytest
from helpers import make_spawner
from traitlets import Unicode

from batchspawner import SlurmSpawner
from batchspawner.core.options import OptionError, validate_spawner_user_options
from batchspawner.commands.runner import CommandRunner, split_command
from batchspawner.spawner import SpawnFailed
from fakes import FakeRunner, Reply


def submit_runner(job="4242"):
    return FakeRunner(responder=lambda argv, stdin: Reply(stdout=f"{job}\n") if argv[0] == "sbatch" else Reply())


def submitted_script(runner):
    return next(c.stdin for c in runner.calls if c.argv[0] == "sbatch")


# ------------------------------------------------------------------ item 3: a site's own form keys
class CentreSpawner(SlurmSpawner):
    """A centre's 1.3 subclass: its own form, its own keys (queue, runtime, other), a script using {other}."""

    batch_script = Unicode(
        "#!/bin/bash\n#SBATCH --partition={queue}\n#SBATCH --time={runtime}\n#SBATCH --comment={other}\n"
        "{env_text}\n{cmd}\n"
    ).tag(config=True)
    req_env_text = Unicode("", help="export lines the admin sets").tag(config=True)

    options_form = Unicode("<select name='queue'><option>debug</option></select>").tag(config=True)

    def options_from_form(self, formdata):
        return {
            "queue": formdata.get("queue", ["debug"])[0],
            "runtime": formdata.get("runtime", ["01:00:00"])[0],
            "other": formdata.get("other", ["none"])[0],
        }


async def test_site_form_keys_reach_the_script():
    runner = submit_runner()
    spawner = make_spawner(CentreSpawner, runner, req_env_text="export A=1\nexport B='two words'")
    spawner.user_options = await _maybe(spawner.run_options_from_form(
        {"queue": ["debug"], "runtime": ["00:30:00"], "other": ["projX"]}
    ))
    values = validate_spawner_user_options(spawner)
    assert values == {"queue": "debug", "runtime": "00:30:00", "other": "projX"}
    await spawner.submit_batch_script(values)
    script = submitted_script(runner)
    assert "#SBATCH --comment=projX\n" in script
    assert "#SBATCH --time=00:30:00\n" in script
    # the admin's multi-line trait is the site's own text: rendered as configured
    assert "\nexport A=1\nexport B='two words'\n" in script


async def _maybe(value):
    import inspect

    return await value if inspect.isawaitable(value) else value


async def test_site_form_key_value_is_still_checked():
    spawner = make_spawner(CentreSpawner, submit_runner())
    spawner.user_options = await _maybe(spawner.run_options_from_form({"other": ["x\n#SBATCH --account=rich"]}))
    with pytest.raises(OptionError) as err:
        validate_spawner_user_options(spawner)
    assert err.value.status_code == 400 and err.value.field == "other"
    assert "may contain only" in str(err.value)  # refused for its value, not for its name


def test_raw_rest_key_no_one_declared_is_refused():
    """The REST API (no form ran): a key that is neither a request variable nor the site's form's."""
    spawner = make_spawner(CentreSpawner, submit_runner())
    spawner.user_options = {"other": "projX"}
    with pytest.raises(OptionError) as err:
        validate_spawner_user_options(spawner)
    assert err.value.status_code == 400 and err.value.field == "other"
    spawner.user_options = {"surprise": "1"}
    with pytest.raises(OptionError, match="surprise"):
        validate_spawner_user_options(spawner)


def test_posted_fields_through_jupyterhubs_passthrough_declare_nothing():
    """Without the site's own options_from_form, a posted field's name is the user's choice."""

    class FormOnly(SlurmSpawner):
        batch_script = Unicode("#!/bin/bash\n#SBATCH --comment={other}\n{cmd}\n").tag(config=True)

    spawner = make_spawner(FormOnly, submit_runner())
    spawner.user_options = spawner.run_options_from_form({"other": ["x"], "_xsrf": ["t"]})
    with pytest.raises(OptionError, match="other"):
        validate_spawner_user_options(spawner)


def test_allowed_user_options_declares_a_non_request_key():
    """The one-line setting that restores 1.3 for REST clients: list the site's own keys."""
    spawner = make_spawner(CentreSpawner, submit_runner(), allowed_user_options=["queue", "runtime", "other"])
    spawner.user_options = {"other": "projX", "queue": "debug"}
    assert validate_spawner_user_options(spawner) == {"other": "projX", "queue": "debug"}
    spawner.user_options = {"other": "a b"}  # a space would split an #SBATCH line into two options
    with pytest.raises(OptionError, match="other"):
        validate_spawner_user_options(spawner)


def test_form_keys_cannot_name_protected_variables():
    class Greedy(CentreSpawner):
        def options_from_form(self, formdata):
            return {"cmd": "evil", "other": "x"}

    spawner = make_spawner(Greedy, submit_runner())
    spawner.user_options = spawner.run_options_from_form({})
    with pytest.raises(OptionError, match="cmd"):
        validate_spawner_user_options(spawner)


async def test_user_chosen_multiline_value_is_never_rendered():
    """An admin's multi-line trait is fine; the same trait chosen by a user (a wrapper's field) is not."""
    spawner = make_spawner(CentreSpawner, submit_runner(), req_env_text="export A=1\nexport B=2")
    spawner.chosen_by_user = {"req_env_text": "export A=1\nexport B=2"}
    with pytest.raises(SpawnFailed, match="env_text"):
        spawner.render_script()


# ------------------------------------------------------------------ item 4: a string cmd
def test_string_cmd_with_arguments_becomes_separate_words():
    spawner = make_spawner(
        SlurmSpawner, None, cmd="/opt/jh/bin/jupyterhub-singleuser --FileContentsManager.delete_to_trash=False"
    )
    words = shlex.split(spawner.cmd_formatted_for_batch())
    i = words.index("/opt/jh/bin/jupyterhub-singleuser")
    assert words[i + 1] == "--FileContentsManager.delete_to_trash=False"
    # a list cmd keeps each element one word (a path with a space stays whole)
    spawner = make_spawner(SlurmSpawner, None, cmd=["/opt/my apps/jupyterhub-singleuser", "--debug"])
    words = shlex.split(spawner.cmd_formatted_for_batch())
    assert "/opt/my apps/jupyterhub-singleuser" in words and "--debug" in words


# ------------------------------------------------------------------ item 5: _get_batch_script override
async def test_get_batch_script_override_is_called_and_super_renders():
    seen = {}

    class Site(SlurmSpawner):
        async def _get_batch_script(self, **subvars):
            seen.update(subvars)
            script = await super()._get_batch_script(**subvars)
            return script + "# site footer\n"

    runner = submit_runner()
    spawner = make_spawner(Site, runner, batch_script="#!/bin/bash\n#SBATCH --time={runtime}\n{cmd}\n",
                           req_runtime="02:00:00")
    assert await spawner.submit_batch_script() == "4242"
    script = submitted_script(runner)
    assert script.startswith("#!/bin/bash\n#SBATCH --time=02:00:00\n")
    assert script.endswith("# site footer\n")
    assert seen["runtime"] == "02:00:00" and "cmd" in seen


# ------------------------------------------------------------------ item 6: ssh exec_prefix quoting
FAKE_SSH = """#!/bin/sh
# FAKE ssh: drops the destination and runs the rest as sshd does (one string for the login shell)
shift
exec /bin/sh -c "$*"
"""


@pytest.fixture
def fake_ssh(tmp_path):
    ssh = tmp_path / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    return str(ssh)


async def remote_words(ssh, template, **values):
    """The words the remote command receives (each followed by '|' from printf; no value has one)."""
    runner = CommandRunner(prefix=[ssh, "login1"], remote_shell=True)
    argv = split_command("printf '%s|' " + template, **values)
    result = await runner.run(argv)
    return result.stdout.split("|")[:-1]


async def test_ssh_prefix_13_template_reaches_the_remote_command_as_in_13(fake_ssh):
    words = await remote_words(fake_ssh, r"-h -j {job_id} -o '%T\ %B-144.example.org'", job_id="77")
    assert words == ["-h", "-j", "77", "-o", "%T %B-144.example.org"]
    # the other 1.3 spelling: double quotes around single quotes
    words = await remote_words(fake_ssh, "-o \"'%T %B'\" {job_id}", job_id="77")
    assert words == ["-o", "%T %B", "77"]


async def test_ssh_prefix_values_stay_one_quoted_word(fake_ssh, tmp_path):
    hostile = f"1; touch {tmp_path}/pwned; echo $(id) `id` '\"\\"
    words = await remote_words(fake_ssh, r"-j {job_id} -o '%T\ %B-{job_id}'", job_id=hostile)
    assert words == ["-j", hostile, "-o", f"%T %B-{hostile}"]
    assert not (tmp_path / "pwned").exists()
    # a value inside the template's own quotes cannot be quoted safely: the whole word is sent as one
    words = await remote_words(fake_ssh, "-o \"'%T {job_id}'\"", job_id=hostile)
    assert words == ["-o", f"'%T {hostile}'"]
    assert not (tmp_path / "pwned").exists()
    # a plain word with a space stays one word (the new behaviour, kept)
    words = await remote_words(fake_ssh, "-o '%T %B'")
    assert words == ["-o", "%T %B"]


# ------------------------------------------------------------------ item 7: wrapspawner 1.0 API
def profiles_10():
    return [
        ("Local", "local", "jupyterhub.spawner.LocalProcessSpawner", {}),
        ("Slurm short", "short", "batchspawner.SlurmSpawner", {"req_runtime": "01:00:00", "req_partition": "debug"}),
    ]


def test_profiles_construct_child_called_directly_honours_the_profile():
    from wraphelpers import make_wrapper

    from wrapspawner import ProfilesSpawner

    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles_10())
    wrapper.user_options = {"profile": "short"}
    child = wrapper.construct_child()
    assert isinstance(child, SlurmSpawner)
    assert child.req_partition == "debug" and child.req_runtime == "01:00:00"
    assert wrapper.child_profile == "short"


def test_profiles_options_form_attribute_is_the_rendered_form():
    from wraphelpers import make_wrapper

    from wrapspawner import ProfilesSpawner

    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles_10())
    form = wrapper.options_form
    assert isinstance(form, str) and 'value="local"' in form and 'value="short"' in form


async def test_profiles_options_from_form_is_synchronous_and_still_validated():
    from wraphelpers import make_wrapper

    from wrapspawner import ProfilesSpawner

    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles_10())
    options = wrapper.options_from_form({"profile": ["short"]})
    assert options == {"profile": "short"}
    # what JupyterHub calls: the same answer, after the asynchronous checks
    assert await _maybe(wrapper.run_options_from_form({"profile": ["short"]})) == {"profile": "short"}
    with pytest.raises(OptionError, match="profile"):
        await _maybe(wrapper.run_options_from_form({"profile": ["nope"]}))
