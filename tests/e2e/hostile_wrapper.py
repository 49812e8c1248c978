"""Runs inside a real Slurm job in place of batchspawner-singleuser (test only).

It attacks the hub's port API with the server's own real token, records every
HTTP status it gets in $PROBE_DIR/codes.json, waits for the test to say go,
then runs the real wrapper (which must still succeed), and afterwards tries to
report a second port.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

api = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner"
token = os.environ["JUPYTERHUB_API_TOKEN"]
probe = os.environ["PROBE_DIR"]


def post(body, tok=token, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if tok:
        headers["Authorization"] = f"token {tok}"
    req = urllib.request.Request(api, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


codes = {
    "string_port": post({"port": "8888"}),
    "zero_port": post({"port": 0}),
    "big_port": post({"port": 70000}),
    "bool_port": post({"port": True}),
    "float_port": post({"port": 8888.5}),
    "extra_key": post({"port": 12345, "exec_prefix": f"touch {probe}/pwned"}),
    "only_other_key": post({"exec_prefix": f"touch {probe}/pwned"}),
    "list_body": post([8888]),
    "not_json": post(None, raw=b"port=1"),
    "no_token": post({"port": 12345}, tok=None),
    "bad_token": post({"port": 12345}, tok="0" * 32),
}
with open(os.path.join(probe, "codes.json"), "w") as f:
    json.dump(codes, f)

# wait for the test's own probes (other users' tokens) before the real report
for _ in range(600):
    if os.path.exists(os.path.join(probe, "go")):
        break
    time.sleep(0.1)

wrapper = os.path.join(os.path.dirname(sys.executable), "batchspawner-singleuser")
child = subprocess.Popen([wrapper] + sys.argv[1:])
# once the server is up and the spawn finished, a second report must be refused
for _ in range(600):
    if os.path.exists(os.path.join(probe, "ready")):
        break
    time.sleep(0.1)
with open(os.path.join(probe, "second.json"), "w") as f:
    json.dump({"second_report": post({"port": 23456})}, f)
sys.exit(child.wait())
