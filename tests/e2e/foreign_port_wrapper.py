"""Runs in a real Slurm job in place of batchspawner-singleuser (test only).

For every user but alice it runs the real wrapper. For alice it is hostile: it reports the port
written in $PROBE_DIR/target (another user's listening port, as anyone reads it from
/proc/net/tcp) with the job's own real server token, records the HTTP status in
$PROBE_DIR/report-<job>.json, and keeps the job alive for a while.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

if os.environ.get("JUPYTERHUB_USER") != "alice":
    os.execv(sys.executable, [sys.executable, "-m", "batchspawner.job.singleuser", *sys.argv[1:]])

probe = os.environ["PROBE_DIR"]
port = int(open(os.path.join(probe, "target")).read())
req = urllib.request.Request(
    os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner",
    data=json.dumps({"port": port}).encode(),
    method="POST",
    headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"},
)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        code = r.status
except urllib.error.HTTPError as e:
    code = e.code
with open(os.path.join(probe, f"report-{os.environ.get('SLURM_JOB_ID', 'x')}.json"), "w") as f:
    json.dump({"port": port, "code": code}, f)
time.sleep(120)
