# Web apps as profiles: JupyterLab, VS Code, a Linux desktop and any web app, each a Slurm job,
# each behind the hub's login. Load it from your jupyterhub_config.py after your hub settings:
#
#     exec(open("/path/to/examples/apps/jupyterhub_config.py").read())
#
# Needs scripts/setup-apps.sh on the compute nodes (code-server, TigerVNC, noVNC, xauth, xterm)
# and jupyter-server-proxy in the venv the jobs run. How it works (batchspawner/apps.py): every
# job runs the usual single-user server; jupyter-server-proxy inside it serves the app at
# /user/<name>/<app>/, behind the server's own hub OAuth, so only the server's owner reaches it.
# The apps listen on unix sockets in private folders, never on TCP ports other users on a shared
# node could reach. ``default_url`` makes the app the page the user lands on.
import json
import os

c = get_config()  # noqa: F821 (provided by jupyterhub when it loads this file)

c.JupyterHub.spawner_class = "profiles"
c.JupyterHub.cleanup_servers = False  # batch jobs outlive a hub restart
_partition = os.environ.get("JHPC_PARTITION", "debug")
_fields = {
    "runtime": {"type": "walltime", "max": "08:00:00", "default": "01:00:00"},
    "memory": {"type": "memory", "min": "512M", "max": "16G", "default": "2G"},
}

c.ProfilesSpawner.profiles = [
    {"key": "lab", "display": "JupyterLab", "class": "batchspawner.SlurmSpawner",
     "config": {"req_partition": _partition}, "fields": _fields},
    {"key": "vscode", "display": "VS Code (code-server)", "class": "batchspawner.SlurmSpawner",
     "description": "The VS Code editor in your browser, on a compute node.",
     "config": {"req_partition": _partition, "default_url": "/vscode/"}, "fields": _fields},
    {"key": "desktop", "display": "Linux desktop (noVNC)", "class": "batchspawner.SlurmSpawner",
     "description": "A graphical desktop on a compute node, in your browser.",
     "config": {"req_partition": _partition, "default_url": "/desktop/"}, "fields": _fields},
    # Any web app: the command gets {unix_socket} (or {port} with JHPC_WEBAPP_TCP=1) and
    # {base_url}. This one serves a folder read-only; put your app's command here.
    {"key": "webapp", "display": "A web app", "class": "batchspawner.SlurmSpawner",
     "config": {
         "req_partition": _partition,
         "default_url": "/webapp/",
         "environment": {
             "JHPC_WEBAPP_TITLE": "Shared documents",
             "JHPC_WEBAPP_COMMAND": json.dumps([
                 "python3", "-m", "batchspawner.apps", "static",
                 "--socket", "{unix_socket}", "--dir", os.environ.get("JHPC_WEBAPP_DIR", "/usr/share/doc/novnc"),
             ]),
         },
     },
     "fields": _fields},
]
