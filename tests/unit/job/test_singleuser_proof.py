"""Issue 21: batchspawner-singleuser makes its server answer the hub's proof (batchspawner/job/proof.py)
and says so in its report only when its own server answered right.

The server here is a real process: a small tornado app that loads the extension the way
jupyter_server does (import by name from the wrapper's private PYTHONPATH entry, then
``_load_jupyter_server_extension``); the real Jupyter Server is in the e2e tunnel test."""

import json
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

from batchspawner.job import proof, singleuser
from test_singleuser_listen import Hub

# a stand-in for Jupyter Server: loads extensions named in its config path's jupyter_server_config.d
SERVER = r"""
import glob, json, os, sys, importlib, asyncio, logging
from tornado import web
from urllib.parse import urlparse
enabled = {}
for d in os.environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep):
    for f in glob.glob(os.path.join(d, "jupyter_server_config.d", "*.json")):
        enabled.update(json.load(open(f))["ServerApp"]["jpserver_extensions"])
app = web.Application()
serverapp = type("S", (), {"web_app": app, "base_url": "/user/alice/", "log": logging.getLogger()})()
for name in enabled:
    importlib.import_module(name)._load_jupyter_server_extension(serverapp)
print("PATHS", os.environ.get("PYTHONPATH", ""), os.environ.get("JUPYTER_CONFIG_PATH", ""), flush=True)
async def main():
    app.listen(urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port, "0.0.0.0")
    await asyncio.sleep(float(sys.argv[1]))
asyncio.run(main())
"""


def test_install_puts_the_extension_in_a_private_directory_and_enables_it():
    env = {"PYTHONPATH": "/site/mine"}
    private = singleuser.install_proof(env)
    try:
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
        assert env["PYTHONPATH"] == os.path.join(private, "py") + os.pathsep + "/site/mine"
        assert env["JUPYTER_CONFIG_PATH"] == private and env["BATCHSPAWNER_PROOF_DIR"] == private
        with open(os.path.join(private, "py", "batchspawner_proof.py")) as f, open(proof.__file__) as g:
            assert f.read() == g.read()
        with open(os.path.join(private, "jupyter_server_config.d", "batchspawner_proof.json")) as f:
            assert json.load(f) == {"ServerApp": {"jpserver_extensions": {"batchspawner_proof": True}}}
    finally:
        import shutil

        shutil.rmtree(private)


def test_the_extension_marks_itself_loaded_and_cleans_the_kernels_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSPAWNER_PROOF_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}/py{os.pathsep}/site/mine")
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok")
    added = []
    app = SimpleNamespace(web_app=SimpleNamespace(add_handlers=lambda host, h: added.extend(h)),
                          base_url="/user/alice/", log=SimpleNamespace(warning=print))
    proof._load_jupyter_server_extension(app)
    assert (tmp_path / "loaded").exists()
    assert os.environ["PYTHONPATH"] == "/site/mine" and "JUPYTER_CONFIG_PATH" not in os.environ
    assert "BATCHSPAWNER_PROOF_DIR" not in os.environ
    assert [pattern for pattern, _ in added] == ["/user/alice/batchspawner/proof"]


def test_the_wrapper_claims_the_proof_only_after_its_own_server_answered_it(tmp_path):
    hub = Hub()
    env = dict(os.environ, JUPYTERHUB_API_URL=hub.url, JUPYTERHUB_API_TOKEN="tok-s3cret-4242",
               JUPYTERHUB_SERVICE_URL="http://0.0.0.0:0/user/alice/", JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
               TMPDIR=str(tmp_path))
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        # the server lives 1.5 s: time enough for the wrapper to see it answer and report, also on a
        # loaded machine (0.3 s failed about once in 20 fast-tier runs next to e2e tests)
        [sys.executable, "-m", "batchspawner.job.singleuser", sys.executable, "-c", SERVER, "1.5"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    hub.server.shutdown()
    assert done.returncode == 0, done.stderr
    [(body, _, listening)] = hub.reports
    assert body == {"port": body["port"], "proof": proof.SCHEME} and listening
    # the server's kernels do not inherit the wrapper's private paths; the directory is gone after
    assert "PATHS  \n" in done.stdout, done.stdout
    assert list(tmp_path.glob("jhpc-proof-*")) == []
