"""The hub's port API under attack, on the real stack (real Slurm job, real server token)."""

import json
import time
from pathlib import Path

import slurmtools

HERE = Path(__file__).parent


def _wait_for(path: Path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def test_port_api_refuses_everything_but_one_integer_port(slurm, hubs, shared_dir):
    hub = hubs(slurmtools.probe_wrapper_config(shared_dir, HERE / "hostile_wrapper.py")).start()
    hub.ensure_user("alice")
    hub.ensure_user("bob")
    r = hub.api("POST", "/users/alice/server", json={})
    assert r.status_code in (201, 202), r.text

    assert _wait_for(shared_dir / "codes.json"), hub.log_tail()
    codes = json.loads((shared_dir / "codes.json").read_text())
    assert codes == {
        "string_port": 400,
        "zero_port": 400,
        "big_port": 400,
        "bool_port": 400,
        "float_port": 400,
        "extra_key": 400,
        "only_other_key": 400,
        "list_body": 400,
        "not_json": 400,
        "no_token": 403,
        "bad_token": 403,
    }

    # other tokens while alice's server is starting: bob's own API token, alice's
    # non-server API token, and a service token: none may report a port for her
    bob_token = hub.api("POST", "/users/bob/tokens", json={"note": "t"}).json()["token"]
    alice_token = hub.api("POST", "/users/alice/tokens", json={"note": "t"}).json()["token"]
    for token in (bob_token, alice_token, hub.token):
        resp = hub.api("POST", "/batchspawner", token=token, json={"port": 34567})
        assert resp.status_code in (403, 404), (resp.status_code, resp.text)

    # the job id is in the hub's database already, while the spawn is still pending
    import sqlite3

    with sqlite3.connect(hub.workdir / "hub.sqlite") as db:
        states = [json.loads(row[0] or "{}") for row in db.execute("SELECT state FROM spawners")]
    assert any(state.get("job_id", "").isdigit() for state in states), states
    assert hub.server_model("alice")["pending"] == "spawn"

    (shared_dir / "go").touch()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        model = hub.server_model("alice")
        if model and model["ready"]:
            break
        time.sleep(0.25)
    assert model and model["ready"], hub.log_tail()
    (shared_dir / "ready").touch()
    assert _wait_for(shared_dir / "second.json")
    assert json.loads((shared_dir / "second.json").read_text()) == {"second_report": 403}

    # nothing of the spawner changed: the server answers on the port the job reported,
    # no command of the attacker ran, and stop() still cancels through exec_prefix
    assert hub.user_request("alice", "api").status_code == 200
    assert "34567" not in model["url"] and "23456" not in model["url"] and "12345" not in model["url"]
    assert not (shared_dir / "pwned").exists()
    job_id = model["state"]["job_id"]
    assert hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job_id in slurmtools.live_jobs():
        time.sleep(0.5)
    assert job_id not in slurmtools.live_jobs()
