"""jupyterhub-hpc example: JupyterHub spawning single-user servers as Slurm jobs.

`bash scripts/gateway` runs exactly this file against a single-node Slurm on localhost.
On a real cluster, change the marked lines (addresses, partition, authenticator).
"""

import os

c = get_config()  # noqa: F821

# --- where the hub listens -------------------------------------------------------
# Users reach the proxy here (put Apache/nginx with TLS and SSO in front on a real site).
c.JupyterHub.ip = os.environ.get("JHPC_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("JHPC_PORT", "8000"))
# Jobs call the hub's API here to report their port: on a cluster this must be an
# address the compute nodes can reach (the hub's address on the cluster network).
c.JupyterHub.hub_ip = os.environ.get("JHPC_HUB_IP", "127.0.0.1")
c.JupyterHub.hub_port = int(os.environ.get("JHPC_HUB_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:" + os.environ.get("JHPC_PROXY_API_PORT", "8001")

# Batch jobs outlive the hub: never stop them when the hub restarts.
c.JupyterHub.cleanup_servers = False

# --- spawning through Slurm: users pick a profile first -----------------------------------
# ProfilesSpawner shows a form; nothing is submitted until the user picks a profile and its
# resources (no job at login). Every profile is a SlurmSpawner with typed, server-checked fields.
import sys  # noqa: E402

import batchspawner.hub.web  # noqa: E402  (hub pages: session cards, spawn page, job logs)

c.JupyterHub.spawner_class = "profiles"
c.JupyterHub.allow_named_servers = True
# Each named server is a row in the hub's database (kept after a refused or failed start) and
# usually a batch job: bound them per user.
c.JupyterHub.named_server_limit_per_user = int(os.environ.get("JHPC_NAMED_SERVER_LIMIT", "5"))
# Server options (REST user_options, the spawn form) larger than this get HTTP 413 before
# JupyterHub parses, stores or logs them (64 KiB is the default; the profile fields need < 1 KiB).
import batchspawner.hub.bodylimit  # noqa: E402

batchspawner.hub.bodylimit.limit_spawn_bodies(64 * 1024)
partitions = os.environ.get("JHPC_PARTITIONS", os.environ.get("JHPC_PARTITION", "debug")).split()
partition_field = {
    "type": "choice",
    "label": "Partition",
    "choices": {p: p for p in partitions},
    "default": partitions[0],
    "help": "The group of nodes the job runs on; each has its own limits and queue.",
}
c.ProfilesSpawner.profiles = [
    {
        "key": "small",
        "display": "Small: 1 core, 1 GB, up to 4 hours",
        "description": "For notebooks, plotting and light analysis. Usually starts at once.",
        "class": "batchspawner.SlurmSpawner",
        "config": {"req_nprocs": "1", "req_memory": "1G"},
        "fields": {
            "partition": partition_field,
            "runtime": {"type": "walltime", "label": "Wall time", "max": "04:00:00", "default": "01:00:00",
                        "help": "How long the job may run (hours:minutes:seconds); it ends then."},
        },
        "default": True,
    },
    {
        "key": "custom",
        "display": "Custom: choose cores, memory and wall time",
        "description": "More resources may wait longer in the queue.",
        "class": "batchspawner.SlurmSpawner",
        "fields": {
            "partition": partition_field,
            "nprocs": {"type": "int", "label": "CPU cores", "min": 1, "max": 8, "default": 2,
                       "help": "Cores for your kernels, 1 to 8."},
            "memory": {"type": "memory", "label": "Memory", "min": "512M", "max": "8G", "default": "2G",
                       "help": "Memory for the whole job, e.g. 2G or 512M (at most 8G)."},
            "runtime": {"type": "walltime", "label": "Wall time", "max": "08:00:00", "default": "02:00:00",
                        "help": "How long the job may run (hours:minutes:seconds), at most 8 hours."},
        },
    },
]
# Submit and cancel as the user (the hub runs as root, or with a sudoers rule for sbatch/scancel).
c.SlurmSpawner.exec_prefix = "sudo -E -u {username}"
# ...but never as a system account: a hub user named root, slurm, munge (SlurmSpawner.denied_users)
# or whose uid on this host is below min_uid gets HTTP 403 before any command runs. Use your
# site's first user uid (older RHEL: 500). An account this host cannot resolve is refused when
# commands run on another host (submit_hosts, ssh exec_prefix): see allow_accounts_unknown_here.
c.SlurmSpawner.min_uid = int(os.environ.get("JHPC_MIN_UID", "1000"))
# Every job here runs Jupyter Server under batchspawner-singleuser, which answers the hub's proof
# (an HMAC of a nonce with the server's own token, bound to the address reached): with "required"
# no user's own wrapper can have the hub route her server to another listener on the node.
# Keep the default "auto" only while some jobs run batchspawner 1.3's wrapper (docs/security.md).
c.SlurmSpawner.server_proof = "required"
# Users may not pick request variables through the REST API's raw user_options: the profile
# fields above are the only choices (ProfilesSpawner passes none to the child anyway).
c.SlurmSpawner.allowed_user_options = []
# Queue wait + server start-up must fit in start_timeout; http_timeout only covers the final check.
c.SlurmSpawner.start_timeout = 900
c.SlurmSpawner.http_timeout = 120
c.Spawner.default_url = "/lab"

# --- apps next to JupyterLab: VS Code and an Xfce desktop (examples/apps/, docs/apps.md) --------
# Each is a profile like the two above (a Slurm job running the single-user server, the app behind
# it at /user/<name>/vscode/ or /desktop/, reached only by its owner). JHPC_APPS picks them
# (default "vscode desktop"; "" for JupyterLab only; "webapp" adds the sample web app).
# scripts/gateway installs them (scripts/setup-apps.sh); on a cluster, install them on the nodes.
if os.environ.get("JHPC_APPS", "vscode desktop").split():
    apps_example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", "apps", "jupyterhub_config.py")
    if not os.path.exists(apps_example):
        raise SystemExit(f"JHPC_APPS is set but {apps_example} is missing: copy examples/apps/ next to this file "
                         "or set JHPC_APPS='' for JupyterLab only")
    with open(apps_example) as f:
        exec(compile(f.read(), apps_example, "exec"))  # extends c.ProfilesSpawner.profiles

# --- what users and admins see ---------------------------------------------------------------
# Session cards on the home page (job, node, resources, queue position, time left, log), the spawn
# page with Cancel and clear failure pages, a wall-time warning on every page, /hub/hpc/sessions
# for admins. Job logs go to ~/.jupyterhub-hpc/logs (0700), pruned (SlurmSpawner.log_keep_*).
c.JupyterHub.template_paths = [batchspawner.hub.web.TEMPLATES]
c.JupyterHub.template_vars = batchspawner.hub.web.template_vars()
# a start cancelled while pending must not report "Server ready" (and loop into a 424 page)
c.Spawner.progress_ready_hook = batchspawner.hub.web.ready_or_cancelled
# one JSON line per spawn/start/failure/stop; read it with `jupyterhub-hpc-report`
c.SlurmSpawner.usage_log = os.environ.get(
    "JHPC_USAGE_LOG", os.path.join(os.environ.get("JHPC_STATE_DIR", "/var/lib/jupyterhub-hpc"), "usage.jsonl")
)

# --- idle servers end: their batch jobs hold allocations ---------------------------------------
# A closed browser tab would otherwise keep its job (and its cores) until the wall time ends.
# jupyterhub-idle-culler stops servers without activity for JHPC_CULL_TIMEOUT seconds (1 h);
# stopping a server cancels its job. Logging out does not stop servers (work may continue in
# the background); the culler ends the ones nobody uses.
cull_timeout = int(os.environ.get("JHPC_CULL_TIMEOUT", "3600"))
cull_every = int(os.environ.get("JHPC_CULL_EVERY", str(max(10, min(300, cull_timeout // 4)))))
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull_timeout}",
                    f"--cull-every={cull_every}"],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]

# --- who may log in --------------------------------------------------------------------
# The demo uses JupyterHub's shared-password authenticator for local users that exist on the
# cluster. A real site uses its SSO (see authenticators/ and examples/apache/).
demo_users = os.environ.get("JHPC_DEMO_USERS", "alice").split()
c.JupyterHub.authenticator_class = "shared-password"
password_file = os.environ.get("JHPC_DEMO_PASSWORD_FILE", "/var/lib/jupyterhub-hpc/demo-password")
if os.path.exists(password_file):
    with open(password_file) as f:
        c.SharedPasswordAuthenticator.user_password = f.read().strip()
c.Authenticator.allowed_users = set(demo_users)
# Admins (JHPC_ADMIN_USERS, comma or space separated): they see every user's sessions
# (/hub/hpc/sessions, linked in their navbar), JupyterHub's admin page and every job log. Each name
# must be a plain local account name (a-z, 0-9, _ and -, starting with a letter or _, at most 32);
# anything else stops the hub with a message rather than granting admin to a name it cannot match.
# The shared-password authenticator lets them in only with their own admin password (at least 32
# characters, JHPC_DEMO_ADMIN_PASSWORD_FILE; scripts/gateway makes one): with the users' password
# they log in without admin rights. On a real site, list your support staff here (or grant them the
# `admin` role) and keep the list short: an admin can act as any user of the hub.
import re  # noqa: E402

admin_users = [name for name in re.split(r"[\s,]+", os.environ.get("JHPC_ADMIN_USERS", "").strip()) if name]
for name in admin_users:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name):
        raise SystemExit(
            f"JHPC_ADMIN_USERS: {name!r} is not a local user name (lower-case letters, digits, _ and -, "
            "starting with a letter or _, at most 32 characters); fix the list and start the hub again."
        )
# The admin role lists exactly these users: a name removed from the list loses admin at the next
# hub start (admin_users alone would only ever add). JupyterHub then logs one warning at start
# ("both admin_users and users in the admin role"): expected, the two lists are the same.
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [{"name": "admin", "users": list(admin_users)}]
if admin_users:
    c.Authenticator.admin_users = set(admin_users)
    c.Authenticator.allowed_users = set(demo_users) | set(admin_users)
    admin_password_file = os.environ.get(
        "JHPC_DEMO_ADMIN_PASSWORD_FILE", os.path.join(os.path.dirname(password_file), "demo-admin-password")
    )
    if os.path.exists(admin_password_file):
        with open(admin_password_file) as f:
            c.SharedPasswordAuthenticator.admin_password = f.read().strip()

# --- state -------------------------------------------------------------------------------
state_dir = os.environ.get("JHPC_STATE_DIR", "/var/lib/jupyterhub-hpc")
c.JupyterHub.db_url = f"sqlite:///{state_dir}/jupyterhub.sqlite"
# SQLite in WAL mode, every commit still synced: the hub keeps answering during spawn storms
# (see batchspawner/hub/hubdb.py; back up the -wal file too, or use sqlite3's .backup)
from batchspawner.hub.hubdb import sqlite_wal  # noqa: E402

sqlite_wal()
# JupyterHub measures its own event loop every 50 ms by default: 0.05 CPU s per 10 s on an idle
# 2-core hub, more than 50 running servers cost this spawner. Every 0.5 s still logs (and counts
# in the event_loop_interval_seconds metric) each stall of 1 s or more.
c.PeriodicMetricsCollector.event_loop_interval_resolution = 0.5
c.JupyterHub.cookie_secret_file = f"{state_dir}/jupyterhub_cookie_secret"
# each user's last form values per profile (the next form's defaults), next to the database, 0600
c.ProfilesSpawner.remember_file = f"{state_dir}/forms.json"
c.ConfigurableHTTPProxy.pid_file = f"{state_dir}/proxy.pid"
