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

# --- spawning through Slurm ------------------------------------------------------------
# "slurm" is an entry point: no `import batchspawner` is needed for the port callback route.
c.JupyterHub.spawner_class = "slurm"
c.SlurmSpawner.req_partition = os.environ.get("JHPC_PARTITION", "debug")
c.SlurmSpawner.req_runtime = "08:00:00"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_memory = "2G"
# Submit and cancel as the user (the hub runs as root, or with a sudoers rule for sbatch/scancel).
c.SlurmSpawner.exec_prefix = "sudo -E -u {username}"
# Users may not pick request variables (partition, QOS, cluster...) through the REST API's
# user_options; list names here to allow some, or use ProfilesSpawner's typed fields instead.
c.SlurmSpawner.allowed_user_options = []
# Queue wait + server start-up must fit in start_timeout; http_timeout only covers the final check.
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"

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

# --- state -------------------------------------------------------------------------------
state_dir = os.environ.get("JHPC_STATE_DIR", "/var/lib/jupyterhub-hpc")
c.JupyterHub.db_url = f"sqlite:///{state_dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state_dir}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = f"{state_dir}/proxy.pid"
