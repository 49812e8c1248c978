# Web apps as profiles: VS Code, a Linux desktop (Xfce) and any web app, each a Slurm job, each
# behind the hub's login, added NEXT TO the profiles your config already has (JupyterLab's).
# Run it from your jupyterhub_config.py after your own profiles, in the same namespace:
#
#     exec(open("/path/to/examples/apps/jupyterhub_config.py").read())
#
# (not load_subconfig: that one starts from an empty config and would replace your profiles).
# jupyterhub_config.example.py does this for `bash scripts/gateway`. Run on its own, with no
# profiles before it, it adds a plain JupyterLab profile first.
#
# JHPC_APPS (space separated) picks the apps among vscode, desktop and webapp. Default: vscode and
# desktop next to existing profiles; all three on its own (the web app is a sample to adapt).
# Needs scripts/setup-apps.sh on the compute nodes (code-server, TigerVNC, noVNC, Xfce, xauth,
# xterm) and jupyter-server-proxy in the venv the jobs run. How it works (batchspawner/job/apps.py):
# every job runs the usual single-user server; jupyter-server-proxy inside it serves the app at
# /user/<name>/<app>/, behind the server's own hub OAuth, so only the server's owner reaches it.
# The apps listen on unix sockets in private folders, never on TCP ports other users on a shared
# node could reach. ``default_url`` makes the app the page the user lands on.
import json
import os

c = get_config()  # noqa: F821 (provided by jupyterhub when it loads this file)

c.JupyterHub.spawner_class = "profiles"
c.JupyterHub.cleanup_servers = False  # batch jobs outlive a hub restart
_partition = os.environ.get("JHPC_PARTITION") or (os.environ.get("JHPC_PARTITIONS") or "debug").split()[0]
_fields = {
    "runtime": {"type": "walltime", "label": "Wall time", "max": "08:00:00", "default": "01:00:00",
                "help": "How long the job may run (hours:minutes:seconds), at most 8 hours; it ends then."},
    "memory": {"type": "memory", "label": "Memory", "min": "512M", "max": "16G", "default": "2G",
               "help": "Memory for the whole job, e.g. 2G or 512M (at most 16G)."},
}
# The desktop's session: Xfce when the node has it (in its own D-Bus session, in the foreground
# so the desktop ends when the user logs out of Xfce), else an xterm. The screen follows the
# browser window: noVNC asks Xvnc to resize (resize=remote) and Xfce follows the new size.
_desktop_session = (
    "if command -v xfce4-session >/dev/null && command -v dbus-launch >/dev/null; "
    "then exec dbus-launch --exit-with-session xfce4-session; "
    "else exec xterm -geometry 120x40+20+20; fi"
)

_apps = {
    "vscode": {"key": "vscode", "display": "VS Code (code-server)", "class": "batchspawner.SlurmSpawner",
               "description": "The VS Code editor in your browser, on a compute node.",
               "config": {"req_partition": _partition, "default_url": "/vscode/"}, "fields": _fields},
    "desktop": {"key": "desktop", "display": "Linux desktop (Xfce)", "class": "batchspawner.SlurmSpawner",
                "description": "A graphical Xfce desktop on a compute node, in your browser; "
                               "it follows the size of your browser window.",
                "config": {"req_partition": _partition, "default_url": "/desktop/",
                           "environment": {"JHPC_DESKTOP_SESSION": _desktop_session}},
                "fields": _fields},
    # Any web app: the command gets {unix_socket} (or {port} with JHPC_WEBAPP_TCP=1) and
    # {base_url}. This one serves a folder read-only; put your app's command here.
    "webapp": {"key": "webapp", "display": "A web app", "class": "batchspawner.SlurmSpawner",
               "config": {
                   "req_partition": _partition,
                   "default_url": "/webapp/",
                   "environment": {
                       "JHPC_WEBAPP_TITLE": "Shared documents",
                       "JHPC_WEBAPP_COMMAND": json.dumps([
                           "python3", "-m", "batchspawner.job.apps", "static",
                           "--socket", "{unix_socket}", "--dir",
                           os.environ.get("JHPC_WEBAPP_DIR", "/usr/share/doc/novnc"),
                       ]),
                   },
               },
               "fields": _fields},
}

_profiles = list(c.ProfilesSpawner.profiles) if "profiles" in c.ProfilesSpawner else []
_default_apps = "vscode desktop"
if not _profiles:
    _default_apps = "vscode desktop webapp"
    _profiles = [{"key": "lab", "display": "JupyterLab", "class": "batchspawner.SlurmSpawner",
                  "config": {"req_partition": _partition}, "fields": _fields}]
_known = {p.get("key") for p in _profiles}
for _name in os.environ.get("JHPC_APPS", _default_apps).split():
    if _name not in _apps:
        raise SystemExit(f"JHPC_APPS: unknown app {_name!r}; the apps are: {', '.join(_apps)}")
    if _name not in _known:  # a profile of the site's own with that key wins
        _profiles.append(_apps[_name])
c.ProfilesSpawner.profiles = _profiles
