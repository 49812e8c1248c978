# A hub that can reach only a login node, not the compute nodes: submit, query and cancel through
# the login node (submit_hosts), and reach each job's server through an ssh tunnel via the same node.
# See docs/apps.md section 3; tested by tests/e2e/test_tunnel_netns.py.
import os

c = get_config()  # noqa: F821

login = os.environ.get("JHPC_LOGIN_NODE", "login1")
c.JupyterHub.spawner_class = "slurm"
c.JupyterHub.cleanup_servers = False  # jobs (and their tunnels, reopened) survive a hub restart
# the jobs must reach the hub's API: an address of the hub the nodes can route to
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_url = os.environ.get("JHPC_HUB_CONNECT_URL", "http://hub.example.org:8081")

c.SlurmSpawner.submit_hosts = [login]
c.SlurmSpawner.ssh_identity_file = "/etc/jupyterhub/submit_key"
c.SlurmSpawner.tunnel_login_host = login          # the tunnel: ssh -N -L 127.0.0.1:LOCAL:NODE:PORT login
c.SshTunnel.ssh_options = [
    "BatchMode=yes",
    "IdentityFile=/etc/jupyterhub/tunnel_key",    # a key the login node accepts for port forwarding
    "UserKnownHostsFile=/etc/jupyterhub/known_hosts",
    "StrictHostKeyChecking=yes",
    "ServerAliveInterval=15",
]
