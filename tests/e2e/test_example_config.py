"""The README's gateway: jupyterhub_config.example.py as shipped, logged in through the hub's form."""

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import requests

from hubharness import VENV_BIN, free_port

REPO = Path(__file__).resolve().parents[2]


def test_example_config_login_spawn_through_form(slurm, tmp_path):
    port, hub_port, api_port = free_port(), free_port(), free_port()
    password = secrets.token_urlsafe(12)
    pw_file = tmp_path / "pw"
    pw_file.write_text(password)
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}:{env['PATH']}",
        JHPC_PORT=str(port),
        JHPC_HUB_PORT=str(hub_port),
        JHPC_PROXY_API_PORT=str(api_port),
        JHPC_STATE_DIR=str(tmp_path),
        JHPC_DEMO_PASSWORD_FILE=str(pw_file),
        JHPC_DEMO_USERS="alice",
    )
    log = open(tmp_path / "hub.log", "w")
    hub = subprocess.Popen(
        [str(VENV_BIN / "jupyterhub"), "-f", str(REPO / "jupyterhub_config.example.py")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(base + "/hub/login", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        s = requests.Session()
        s.get(base + "/hub/login")
        bad = s.post(base + "/hub/login", data={"username": "alice", "password": "wrong", "_xsrf": s.cookies["_xsrf"]})
        assert "Invalid username or password" in bad.text
        t0 = time.monotonic()
        r = s.post(base + "/hub/login", data={"username": "alice", "password": password, "_xsrf": s.cookies["_xsrf"]})
        assert r.status_code == 200
        # the profile form, and nothing submitted before the user picks
        assert "/hub/spawn" in r.url and 'name="profile"' in r.text, r.url
        xsrf = re.search(r'_xsrf=([^"&]+)', r.text).group(1)
        r = s.post(r.url, data={"profile": "small", "small.partition": "debug", "small.runtime": "00:20:00",
                                "_xsrf": xsrf})
        assert r.status_code == 200, r.text[:500]
        for _ in range(240):
            r = s.get(base + "/user/alice/lab", timeout=30)
            if r.status_code == 200 and "JupyterLab" in r.text:
                break
            time.sleep(0.5)
        assert r.status_code == 200 and "JupyterLab" in r.text, (tmp_path / "hub.log").read_text()[-3000:]
        print(f"login -> JupyterLab through the proxy: {time.monotonic() - t0:.1f} s")
        out = subprocess.run(["squeue", "-h", "-u", "alice", "-o", "%i %j %T"], capture_output=True, text=True)
        assert any("RUNNING" in line for line in out.stdout.splitlines())
    finally:
        hub.terminate()
        hub.wait(30)
        log.close()
        text = (tmp_path / "hub.log").read_text()
        ours = re.findall(r"Job (\d+) submitted", text)
        if ours:
            subprocess.run(["scancel", *ours])
