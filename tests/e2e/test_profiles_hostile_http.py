"""Hostile field values through the real hub's HTTP paths (REST user_options and the spawn form).

A property test (hypothesis, few examples: each accepted one is a real Slurm job): every value
is either refused with HTTP 400 naming the field, with no job submitted, or the job script Slurm
received (``scontrol write batch_script``) holds exactly one directive for that field whose
value is the field's canonical form of it. The in-process version with many more examples is
tests/unit/wrapspawner/test_profiles_options.py.
"""

import re
import subprocess
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import slurmtools
from e2e.test_profiles_e2e import _login
from wrapspawner.options import OptionError, make_field

FIELDS = {
    "runtime": {"type": "walltime", "max": "02:00:00", "default": "00:30:00"},
    "memory": {"type": "memory", "min": "128M", "max": "1G", "default": "256M"},
    "nprocs": {"type": "int", "min": 1, "max": 2, "default": 1},
    # a free-text field (accounts are admin only since issue 11; the job name is the user's)
    "job_name": {"type": "text", "regex": r"proj[0-9]{3}", "default": "proj001"},
}
SBATCH = {"runtime": "--time", "memory": "--mem", "nprocs": "--cpus-per-task", "job_name": "--job-name"}

CONFIG = f"""
c.JupyterHub.spawner_class = 'profiles'
c.SlurmSpawner.startup_poll_interval = 0.25
c.SlurmSpawner.req_partition = 'debug'
c.ProfilesSpawner.profiles = [
    {{'key': 'slurm', 'display': 'Slurm', 'class': 'batchspawner.SlurmSpawner', 'fields': {FIELDS!r}}},
]
"""

HOSTILE = [
    "00:10:00\n#SBATCH --uid=0", "256M\r\n#SBATCH --wrap=id", "$(id)", "`id`", "1; id", "proj001;id",
    "proj001 --uid=0", "-1", "--mem=64G", "0x1", "\u0661", "proj\u0661\u0662\u0663", "1G\x00", "'", '"',
    "00:10:00 ", " 256M", "9" * 300, "512M|sh", "proj001\u2028#SBATCH", "01:00:00&", "{{ cmd }}", "{cmd}",
]
VALID = ["00:20:00", "1:00:00", "512M", "1G", "2", "proj042"]
values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.sampled_from(list("0123456789:-MG proj;$`'\"\n\r|&#=")), min_size=1, max_size=14),
    st.sampled_from(VALID),
)


def _script_of(job_id):
    r = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _wait_job(hub, deadline=120):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        model = hub.server_model("alice")
        state = (model or {}).get("state") or {}
        job_id = (state.get("child_state") or {}).get("job_id")
        if job_id:
            return job_id
        if model is None:
            return None
        time.sleep(0.25)
    return None


def test_hostile_field_values_over_rest_and_form(slurm, hubs):
    hub = hubs(CONFIG).start()
    hub.ensure_user("alice")
    session, _ = _login(hub, "alice")
    page = session.get(hub.url + "/hub/spawn", timeout=30)
    xsrf = re.search(r'_xsrf=([^"&]+)', page.text).group(1)
    seen = {"refused": 0, "accepted": 0}

    @settings(max_examples=24, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(sorted(FIELDS)), value=values, via_form=st.booleans())
    @example(field="runtime", value="1:00:00", via_form=False)  # accepted ones too, every run
    @example(field="memory", value="512M", via_form=True)
    @example(field="job_name", value="proj042", via_form=False)
    def check(field, value, via_form):
        try:
            expected = make_field(field, FIELDS[field]).parse(value)
        except OptionError:
            expected = None
        before = set(slurmtools.live_jobs())
        if via_form:
            r = session.post(hub.url + "/hub/spawn", data={"profile": "slurm", f"slurm.{field}": value, "_xsrf": xsrf},
                             timeout=30, allow_redirects=False)
        else:
            r = hub.api("POST", "/users/alice/server", json={"profile": "slurm", field: value})
        if expected is None:
            assert r.status_code == 400, (field, value, r.status_code, r.text[:300])
            assert field in r.text, r.text[:300]
            assert hub.server_model("alice") is None
            assert set(slurmtools.live_jobs()) - before == set(), "a refused value submitted a job"
            seen["refused"] += 1
            return
        assert r.status_code in (201, 202, 302), (field, value, r.status_code, r.text[:300])
        job_id = _wait_job(hub)
        assert job_id, hub.log_tail()
        script = _script_of(job_id)
        lines = [line for line in script.splitlines() if line.startswith(f"#SBATCH {SBATCH[field]}=")]
        assert lines == [f"#SBATCH {SBATCH[field]}={expected}"], (value, lines)
        assert "--uid" not in script and "--wrap" not in script
        assert hub.stop_server("alice")
        seen["accepted"] += 1

    check()
    print(f"hostile values over HTTP: {seen['refused']} refused with 400, {seen['accepted']} accepted as one value")
    assert seen["refused"] >= 5 and seen["accepted"] >= 3, seen
