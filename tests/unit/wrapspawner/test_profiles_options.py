"""ProfilesSpawner: visibility, validation of the form and of REST user_options, hostile values, 1.0.1 configs."""

import asyncio
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from batchspawner.core.options import OptionError
from batchspawner.spawner import SpawnFailed
from fakes import FakeRunner, Reply
from wraphelpers import make_wrapper
from wrapspawner import ProfilesSpawner
from wrapspawner.options import make_field

FIELDS = {
    "partition": {"type": "choice", "choices": {"debug": "Debug", "long": "Long"}, "default": "debug"},
    "nprocs": {"type": "int", "min": 1, "max": 8, "default": 1},
    "memory": {"type": "memory", "min": "1G", "max": "16G", "default": "2G"},
    "runtime": {"type": "walltime", "max": "1-00:00:00", "default": "01:00:00"},
    "job_name": {"type": "text", "regex": r"proj[0-9]{1,4}", "default": "proj1"},
}
# the #SBATCH option each field's value lands on in the Slurm template
SBATCH = {"partition": "--partition", "nprocs": "--cpus-per-task", "memory": "--mem", "runtime": "--time",
          "job_name": "--job-name"}


def site_profiles(runner=None):
    # every profile gets the fake runner: a test that reaches the wrong one must never run real sbatch
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner, "startup_poll_interval": 0.01} if runner else {}
    return [
        {"key": "hpc", "display": "Slurm", "class": "batchspawner.SlurmSpawner", "config": plumbing, "fields": FIELDS},
        {"key": "a-only", "display": "Group A", "class": "batchspawner.SlurmSpawner", "groups": ["A"],
         "config": plumbing},
        {"key": "b-only", "display": "Group B", "class": "batchspawner.SlurmSpawner", "groups": ["B"],
         "description": "For B <only>", "config": plumbing},
        {"key": "carol", "display": "Carol's", "class": "batchspawner.SlurmSpawner", "users": ["carol"],
         "config": plumbing},
        {"key": "named", "display": "Named", "class": "batchspawner.SlurmSpawner", "config": plumbing,
         "visible": lambda spawner: spawner.user.name.startswith("a")},
    ]


async def test_form_shows_only_visible_profiles_and_refuses_invisible_post():
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(), groups=["A"])
    form = await wrapper.get_options_form()
    shown = re.findall(r'name="profile"[^>]*value="([^"]+)"', form)
    assert shown == ["hpc", "a-only", "named"]
    with pytest.raises(OptionError) as err:
        await wrapper.run_options_from_form({"profile": ["b-only"]})
    assert err.value.status_code == 400 and err.value.field == "profile"
    # the REST API path: same refusal, before any child exists
    wrapper.user_options = {"profile": "carol"}
    with pytest.raises(OptionError, match="not a profile available"):
        await wrapper.run_pre_spawn_hook()
    assert wrapper.child_spawner is None


async def test_form_preselects_last_choice_and_escapes():
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(), groups=["B"])
    wrapper.user_options = {"profile": "hpc", "memory": "8G", "partition": "long"}
    form = await wrapper.get_options_form()
    assert re.search(r'value="hpc"\s+checked', form)
    assert 'name="hpc.memory" id="hpc.memory"\n               value="8G"' in form
    assert '<option value="long" selected>' in form
    assert "For B &lt;only&gt;" in form  # autoescaped
    wrapper.user_options = {"profile": "hpc", "memory": "\"><script>"}  # a refused old value is not shown
    assert "<script>" not in await wrapper.get_options_form()


@pytest.mark.parametrize(
    "options, field, rule",
    [
        ({"profile": "hpc", "cmd": "sh"}, "cmd", "not an option"),
        ({"profile": "hpc", "prologue": "id"}, "prologue", "not an option"),
        ({"profile": "hpc", "qos": "high"}, "qos", "not an option"),
        ({"profile": "hpc", "memory": "64G"}, "memory", "to 16G"),
        ({"profile": "hpc", "nprocs": 0}, "nprocs", "from 1 to 8"),
        ({"profile": "hpc", "runtime": "2-00:00:00"}, "runtime", "HH:MM:SS"),
        ({"profile": "hpc", "job_name": "proj1\n#SBATCH --uid=0"}, "job_name", "newlines"),
        ({"profile": "hpc", "job_name": "proj1;id"}, "job_name", "shell characters"),
        ({"profile": "hpc", "partition": "gpu"}, "partition", "one of: debug, long"),
        ({"profile": ["hpc"]}, "profile", "not a profile"),
        ({"profile": ""}, "profile", "not a profile"),  # present but falsy: never the default profile
        ({"profile": None}, "profile", "not a profile"),
        ({"profile": False}, "profile", "not a profile"),
        ({"profile": 0}, "profile", "not a profile"),
        ({"profile": {}}, "profile", "not a profile"),
        ({"profile": "HPC"}, "profile", "not a profile"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_rest_user_options_refused(options, field, rule):
    runner = FakeRunner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(runner))
    wrapper.user_options = options
    with pytest.raises(OptionError) as err:
        await wrapper.run_pre_spawn_hook()
    assert err.value.status_code == 400 and err.value.field == field and rule in err.value.rule
    assert runner.calls == []


@pytest.mark.parametrize(
    "regex, value, ok",
    [
        (r"\w+", "proj42", True),
        (r"\w+", "\u0663\u0664", False),  # Arabic-Indic digits: \w without re.ASCII matched them
        (r"\d+", "\u0663\u0664", False),
        (r"\w+", "caf\u00e9", False),
        (r"[\w-]+", "-proj", False),  # a leading '-' could become an option of a command
        (r"[\w-]+", "--uid", False),
        (r"[\w-]+", "proj-1", True),
        (r".*", "a b", False),  # a loose regex still gets the safe charset
        (r".*", "x;id", False),
        (r".*", "x\u00a0y", False),
        (r".*", "x/y:z", True),
        (r".*", "", False),
        (r"proj[0-9]{3}", "proj0420", False),  # the regex is matched whole
        (r"proj[0-9]{3}", "proj042", True),
    ],
)
def test_text_field_needs_regex_and_safe_charset(regex, value, ok):
    fld = make_field("account", {"type": "text", "regex": regex})
    if ok:
        assert fld.parse(value) == value
    else:
        with pytest.raises(OptionError) as err:
            fld.parse(value)
        assert err.value.field == "account" and "ASCII" in err.value.rule


def test_text_field_regex_is_ascii_only():
    with pytest.raises(ValueError, match="re.ASCII"):
        make_field("account", {"type": "text", "regex": r"(?u)\w+"})


async def test_missing_profile_key_means_the_default_and_empty_form_choice_is_refused():
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles())
    assert (await wrapper.validate_options({}))[0].key == "hpc"
    assert (await wrapper.validate_options({"memory": "4G"}))[1]["memory"] == "4G"
    with pytest.raises(OptionError) as err:
        await wrapper.run_options_from_form({"profile": [""]})
    assert err.value.field == "profile"
    assert (await wrapper.run_options_from_form({}))["profile"] == "hpc"


async def test_unchosen_profile_fields_never_block_the_form():
    two = [
        {"key": "hpc", "class": "batchspawner.SlurmSpawner", "fields": FIELDS},
        {"key": "big", "class": "batchspawner.SlurmSpawner",
         "fields": {"nprocs": {"type": "int", "min": 16, "max": 64, "default": 16},
                    "job_name": {"type": "text", "regex": r"(?P<p>big)[0-9]+", "default": "big1"}}},
    ]
    wrapper = make_wrapper(ProfilesSpawner, profiles=two)
    form = await wrapper.get_options_form()
    inputs = re.findall(r"<(?:input|select)\b[^>]*>", form)
    assert len(inputs) == 2 + len(FIELDS) + 2  # the radios, hpc's fields (the choice is a select), big's
    for tag in inputs:
        # no browser-side check that could block submitting another profile (and no Python regex as
        # an HTML pattern); only the profile radios are required
        assert not re.search(r"\s(pattern|min|max|step)=", tag), tag
        assert ("required" in tag) == ('name="profile"' in tag), tag
        assert 'type="number"' not in tag
    assert 'name="big.nprocs" id="big.nprocs"\n               value="16" inputmode="numeric"' in form
    # without JavaScript every input is sent: the unchosen profile's values are ignored ...
    options = await wrapper.run_options_from_form(
        {"profile": ["hpc"], "big.nprocs": ["2"], "big.job_name": ["not valid"], "hpc.nprocs": ["4"]})
    assert options["profile"] == "hpc" and options["nprocs"] == "4" and "big" not in str(options)
    # ... and the chosen profile's are checked on the server, naming the field
    with pytest.raises(OptionError) as err:
        await wrapper.run_options_from_form({"profile": ["big"], "big.nprocs": ["2"], "hpc.nprocs": ["4"]})
    assert err.value.field == "nprocs" and "from 16 to 64" in err.value.rule


async def test_template_paths_override_the_form(tmp_path):
    (tmp_path / "profiles_form.html").write_text(
        "<ul>{% for p in profiles %}<li data-key='{{ p.key }}'>{{ p.display }}{% if p.key == selected %}*{% endif %}"
        "</li>{% endfor %}</ul><i>{{ user }}</i>")
    (tmp_path / "other.html").write_text("other {{ selected }}")
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(), template_paths=[str(tmp_path)])
    form = await wrapper.get_options_form()
    assert form == ("<ul><li data-key='hpc'>Slurm*</li><li data-key='named'>Named</li></ul><i>alice</i>")
    wrapper.form_template_name = "other.html"
    assert await wrapper.get_options_form() == "other hpc"
    # the package's own template is still found when the folder does not have it
    empty = make_wrapper(ProfilesSpawner, profiles=site_profiles(), template_paths=[str(tmp_path / "none")])
    assert 'class="wrapspawner-profiles"' in await empty.get_options_form()


@pytest.mark.parametrize("default_profile, expected", [("", "b-only"), ("named", "named"), ("a-only", "b-only")])
async def test_default_flag_picks_the_profile_used_without_a_choice(default_profile, expected):
    marked = site_profiles()
    marked[2] = {**marked[2], "default": True}  # b-only; a-only is not visible to this user
    wrapper = make_wrapper(ProfilesSpawner, profiles=marked, groups=["B"], default_profile=default_profile)
    assert re.search(rf'value="{expected}"\s+checked', await wrapper.get_options_form())
    assert len(re.findall(r"\schecked", await wrapper.get_options_form())) == 1
    assert (await wrapper.validate_options({}))[0].key == expected  # a REST spawn without a profile
    assert (await wrapper.run_options_from_form({}))["profile"] == expected
    # a user who cannot see the marked profile gets the first visible one
    other = make_wrapper(ProfilesSpawner, profiles=marked, groups=["A"])
    assert (await other.validate_options({}))[0].key == "hpc"


async def test_form_refuses_fields_of_unknown_profiles():
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles())
    with pytest.raises(OptionError, match="b-only.x"):
        await wrapper.run_options_from_form({"profile": ["hpc"], "b-only.x": ["1"]})
    ok = await wrapper.run_options_from_form({"profile": ["hpc"], "hpc.memory": ["3072M"], "_xsrf": ["t"]})
    assert ok == {"profile": "hpc", "partition": "debug", "nprocs": "1", "memory": "3G", "runtime": "01:00:00",
                  "job_name": "proj1"}


HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["4G\n#SBATCH --uid=0", "$(id)", "`id`", "1;id", "debug long", "-1", "1e3", " 2", "2 ",
                     "00:10:00\r", "1-25:00:00", "proj1 && id", "--wrap=id", "4G'", "long\u2028x", "0x10", "٣"]),
    st.builds(lambda good, bad: good + bad, st.sampled_from(["debug", "4", "4G", "01:00:00", "proj12"]),
              st.text(min_size=1, max_size=8)),
    st.integers(min_value=-10, max_value=10**12), st.booleans(), st.none(), st.floats(allow_nan=True),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:,@%+=/-]*$")


def _baseline_lines():
    runner = FakeRunner(responder=_respond)
    asyncio.run(_spawn_script(runner, {"profile": "hpc"}))
    return len(next(c for c in runner.calls if c.argv[0] == "sbatch").stdin.splitlines())


def _respond(argv, stdin):
    if argv[0] == "sbatch":
        return Reply(stdout="77\n")
    if argv[0] == "squeue":  # the job ended at once: the spawn fails
        shared = any(a.startswith("%i") for a in argv)
        return Reply(stdout=("77 " if shared else "") + "FAILED localhost None\n")
    return Reply()


async def _spawn_script(runner, options, name="alice"):
    wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(runner), name=name)
    wrapper.user_options = options
    await wrapper.run_pre_spawn_hook()
    with pytest.raises(SpawnFailed):
        await wrapper.start()
    return wrapper


ABSENT = object()  # the key is not sent at all
# values a field accepts in a non-canonical spelling: the script must hold the canonical one
PLAUSIBLE = st.sampled_from(["4096M", "2gb", "8GiB", "16G", "1024", "007", 3, "8", "1:00:00", "0-02:00:00",
                             "1-00:00:00", "00:01:00", "long", "debug", "proj0042", "proj7", ""])
VALUES = st.sampled_from([HOSTILE, HOSTILE, PLAUSIBLE]).flatmap(lambda strategy: strategy)
# "zed" sees only "hpc" (no groups; "named" is for names starting with "a")
GOOD_PROFILE = st.sampled_from([ABSENT, "hpc"])
BAD_PROFILE = st.one_of(
    st.sampled_from(["", None, False, 0, 1, [], ["hpc"], {"hpc": 1}, "HPC", " hpc", "hpc ", "hpc\n", "b-only",
                     "a-only", "carol", "named", "hpc.memory", "local"]),
    HOSTILE,
)
# mostly a good profile, so that the field values and extra keys are reached too
PROFILE_VALUES = st.sampled_from([GOOD_PROFILE, GOOD_PROFILE, BAD_PROFILE]).flatmap(lambda strategy: strategy)
EXTRA_KEYS = st.one_of(
    st.sampled_from(["cmd", "prologue", "options", "qos", "req_qos", "reservation", "gres", "cluster", "__class__",
                     "Memory", "memory ", "", "profile", *FIELDS]),
    st.text(max_size=8),
)
FORM_EXTRA_NAMES = st.one_of(
    st.sampled_from(["cmd", "hpc.cmd", "hpc.qos", "hpc.req_qos", "hpc.profile", "b-only.x", "named.x", "carol.x",
                     "hpc.", ".memory", "_xsrf", "profile", *(f"hpc.{n}" for n in FIELDS)]),
    st.text(max_size=8),
)
FIELD_OBJS = {name: make_field(name, spec) for name, spec in FIELDS.items()}


def _refused(name, raw):
    try:
        FIELD_OBJS[name].parse(raw)
    except OptionError:
        return True
    return False


def _expected_refusals(options):
    """Fields the server may name for REST ``options`` (None: it must accept them)."""
    if "profile" in options and options["profile"] != "hpc":
        return {"profile"}
    unknown = [k for k in options if k != "profile" and k not in FIELDS]
    if unknown:
        return {str(unknown[0])[:40]}  # keys are checked in order, before any value
    bad = {n for n in FIELDS if n in options and options[n] not in (None, "", [""]) and _refused(n, options[n])}
    return bad or None


def _expected_form_refusals(formdata):
    if "profile" in formdata and len(formdata["profile"]) != 1:
        return {"profile"}
    for input_name in formdata:
        if input_name not in ("profile", "_xsrf") and input_name not in {f"hpc.{n}" for n in FIELDS}:
            return {input_name[:40]}
    options = {n: formdata[f"hpc.{n}"] for n in FIELDS if f"hpc.{n}" in formdata}
    if "profile" in formdata:
        options["profile"] = formdata["profile"][0]
    return _expected_refusals(options)


def _canonical(name, raw):
    return FIELD_OBJS[name].default if raw in (None, "", [""]) else FIELD_OBJS[name].parse(raw)


def _often_none(keys):
    some = st.dictionaries(keys, HOSTILE, min_size=1, max_size=2)
    return st.sampled_from([st.just({}), st.just({}), some]).flatmap(lambda strategy: strategy)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(FIELDS)), value=VALUES, profile=PROFILE_VALUES, extras=_often_none(EXTRA_KEYS),
       form_extras=_often_none(FORM_EXTRA_NAMES), via_form=st.booleans())
def test_hostile_values_refused_or_one_safe_value(field, value, profile, extras, form_extras, via_form):
    runner = FakeRunner(responder=_respond)
    as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731 (form values are lists)
    if via_form:
        formdata = {**{k: as_list(v) for k, v in form_extras.items()}, f"hpc.{field}": as_list(value)}
        if profile is not ABSENT:
            formdata["profile"] = [profile if isinstance(profile, str) else str(profile)]
        expected = _expected_form_refusals(formdata)
        raws = {n: formdata[f"hpc.{n}"] for n in FIELDS if f"hpc.{n}" in formdata}
    else:
        options = {**extras, field: value}
        if profile is not ABSENT:
            options["profile"] = profile
        expected = _expected_refusals(options)
        raws = options
    try:
        if via_form:
            wrapper = make_wrapper(ProfilesSpawner, profiles=site_profiles(runner), name="zed")
            options = asyncio.run(wrapper.run_options_from_form(formdata))
        asyncio.run(_spawn_script(runner, options, name="zed"))
    except OptionError as e:
        assert e.status_code == 400 and expected is not None and e.field in expected, (e, expected)
        assert not [c for c in runner.calls if c.argv[0] == "sbatch"]
        event(f"refused: {'profile' if e.field == 'profile' else 'field' if e.field in FIELDS else 'extra key'}")
        return
    event("submitted")
    assert expected is None, expected
    sent = [c for c in runner.calls if c.argv[0] == "sbatch"]
    assert len(sent) == 1
    script = sent[0].stdin
    for name in FIELDS:
        raw = raws.get(name)
        if raw not in (None, "", [""]):
            # what the user sent and was accepted was itself one plain value
            raw_text = str(raw[0] if isinstance(raw, list) else raw)
            assert SAFE.fullmatch(raw_text) and not isinstance(raw, bool), raw
        lines = [line for line in script.splitlines() if line.startswith(f"#SBATCH {SBATCH[name]}=")]
        assert len(lines) == 1, script
        assert lines[0].split("=", 1)[1] == _canonical(name, raw)  # exactly the canonical value
    assert len(script.splitlines()) == BASELINE_LINES


BASELINE_LINES = _baseline_lines()


WRAPSPAWNER_101_CONFIG = """
c.JupyterHub.spawner_class = 'wrapspawner.ProfilesSpawner'
c.Spawner.http_timeout = 120
c.SlurmSpawner.req_nprocs = '2'
c.SlurmSpawner.req_queue = 'debug'
c.SlurmSpawner.req_runtime = '1:00:00'
c.SlurmSpawner.req_memory = '4gb'
c.ProfilesSpawner.ip = '0.0.0.0'
c.ProfilesSpawner.default_profile = 'slurm2c'
c.ProfilesSpawner.profiles = [
   ('Local server', 'local', 'jupyterhub.spawner.LocalProcessSpawner', {'ip': '0.0.0.0'}),
   ('Slurm - 2 cores, 8 hours', 'slurm2c', 'batchspawner.SlurmSpawner',
      dict(req_nprocs='2', req_partition='debug', req_runtime='8:00:00')),
   ('Slurm - 1 core, 4 hours', 'slurm1c', 'batchspawner.SlurmSpawner',
      dict(req_nprocs='1', req_partition='debug', req_runtime='4:00:00')),
]
"""


async def test_wrapspawner_101_config_runs_unchanged(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    path = tmp_path / "jupyterhub_config.py"
    path.write_text(WRAPSPAWNER_101_CONFIG)
    cfg = PyFileConfigLoader(path.name, str(tmp_path)).load_config()
    runner = FakeRunner(responder=_respond)
    wrapper = make_wrapper(ProfilesSpawner, config=cfg)
    form = await wrapper.get_options_form()
    assert re.search(r'value="slurm2c"\s+checked', form)
    options = await wrapper.run_options_from_form({"profile": ["slurm1c"]})  # the 1.0.1 form's only input
    assert options == {"profile": "slurm1c"}
    wrapper.user_options = options
    await wrapper.run_pre_spawn_hook()
    child = wrapper.child_spawner
    child.runner = child.query_runner = child.status_runner = runner
    assert (child.req_nprocs, child.req_runtime, child.req_memory) == ("1", "4:00:00", "4gb")
    with pytest.raises(SpawnFailed):
        await wrapper.start()
    script = next(c for c in runner.calls if c.argv[0] == "sbatch").stdin
    assert "#SBATCH --cpus-per-task=1\n" in script and "#SBATCH --time=4:00:00\n" in script
    assert "#SBATCH --partition=debug\n" in script
    # 1.0.1 form traits still work
    cfg.ProfilesSpawner.form_template = '<select name="profile">{input_template}</select>'
    # (a user who has not started anything yet: alice's form now preselects her last profile, slurm1c)
    legacy = make_wrapper(ProfilesSpawner, name="bob", config=cfg)
    assert '<option value="slurm2c" selected>Slurm - 2 cores, 8 hours</option>' in await legacy.get_options_form()
