"""batchspawner.core.options: a bare batch spawner's user_options are opt-in (allowed_user_options)."""

import pytest

from batchspawner import SlurmSpawner
from batchspawner.core.options import OptionError, check_scalar, validate_spawner_user_options, validate_user_options
from helpers import make_spawner

REQUEST_VARS = {"partition", "qos", "reservation", "runtime", "cluster", "prologue"}


@pytest.mark.parametrize(
    "options, allowed, field, rule",
    [
        ({"partition": "gpu"}, (), "partition", "options users may set: none"),
        ({"qos": "high"}, ["runtime"], "qos", "options users may set: runtime"),
        ({"reservation": "r1"}, ["runtime"], "reservation", "allowed_user_options"),
        ({"prologue": "id"}, ["prologue"], "prologue", "cannot be set by users"),  # never, even if listed
        ({"nonsense": "1"}, None, "nonsense", "not an option this server accepts"),  # not a req_* var, not listed
        ({"runtime\n": "1"}, ["runtime"], "runtime\n", "not a valid option name"),
        ({"runtime": "01:00:00\n"}, ["runtime"], "runtime", "no spaces, quotes, newlines"),
    ],
    ids=["none-allowed", "qos", "reservation", "protected", "undeclared", "name-newline", "value-final-newline"],
)
def test_refused_with_400_naming_the_field(options, allowed, field, rule):
    with pytest.raises(OptionError) as err:
        validate_user_options(options, REQUEST_VARS, allowed)
    assert err.value.status_code == 400 and err.value.field == field and rule in err.value.rule


def test_allowed_keys_pass_and_no_allowlist_keeps_the_old_rule():
    # a key the admin listed is the site's own template variable (1.3 merged every key), value still checked
    assert validate_user_options({"other": "x"}, REQUEST_VARS, ["other"]) == {"other": "x"}
    with pytest.raises(OptionError):
        validate_user_options({"other": "x\n#SBATCH --uid=0"}, REQUEST_VARS, ["other"])
    assert validate_user_options({"runtime": "01:00:00"}, REQUEST_VARS, ["runtime"]) == {"runtime": "01:00:00"}
    assert validate_user_options({}, REQUEST_VARS, ()) == {}
    assert validate_user_options({"qos": "high"}, REQUEST_VARS) == {"qos": "high"}  # callers not passing one yet


def test_a_final_newline_is_not_a_safe_value():
    with pytest.raises(OptionError):
        check_scalar("partition", "debug\n")
    assert check_scalar("partition", "debug") == "debug"


def test_spawner_allowlist_is_read_from_the_spawner_and_defaults_to_the_1_3_rule():
    spawner = make_spawner(SlurmSpawner)
    spawner.user_options = {"partition": "gpu"}
    assert spawner.allowed_user_options is None  # batchspawner 1.3 configs keep working
    assert validate_spawner_user_options(spawner) == {"partition": "gpu"}
    spawner.user_options = {"prologue": "id"}
    with pytest.raises(OptionError, match="cannot be set by users"):
        validate_spawner_user_options(spawner)
    spawner.allowed_user_options = []
    spawner.user_options = {"partition": "gpu"}
    with pytest.raises(OptionError, match="options users may set: none"):
        validate_spawner_user_options(spawner)
    spawner.allowed_user_options = ["partition"]
    assert validate_spawner_user_options(spawner) == {"partition": "gpu"}
    spawner.user_options = {"partition": "gpu", "qos": "high"}
    with pytest.raises(OptionError) as err:
        validate_spawner_user_options(spawner)
    assert err.value.field == "qos"


def test_protected_keys_cannot_be_allowed():
    from traitlets import TraitError

    with pytest.raises(TraitError, match="SlurmSpawner.allowed_user_options: cmd, prologue"):
        make_spawner(SlurmSpawner, allowed_user_options=["runtime", "prologue", "cmd"])


async def test_no_unhandled_user_options_warning_on_a_spawn_with_options(caplog):
    """JupyterHub >= 5.3 runs ``apply_user_options`` before start() and warns "Received unhandled
    user_options" on every spawn when none is set (a batchspawner 1.3 site's own options_form on
    SlurmSpawner did). The batch spawner's default hook leaves them to start(); a site's own wins."""
    import logging

    from batchspawner.schedulers.slurm import SlurmSpawner
    from fakes import FakeRunner
    from helpers import make_spawner

    spawner = make_spawner(SlurmSpawner, FakeRunner())
    if not spawner.has_trait("apply_user_options"):
        pytest.skip("JupyterHub < 5.3 has no apply_user_options")
    caplog.set_level(logging.DEBUG)
    await spawner._run_apply_user_options({"runtime": "01:00:00", "partition": "debug"})
    assert "unhandled user_options" not in caplog.text
    seen = []
    own = make_spawner(SlurmSpawner, FakeRunner(), apply_user_options=lambda sp, opts: seen.append(opts))
    await own._run_apply_user_options({"runtime": "01:00:00"})
    assert seen == [{"runtime": "01:00:00"}]
