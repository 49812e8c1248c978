# Slurm through two login nodes over ssh (see README.md beside this file).
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "slurm"
c.SlurmSpawner.submit_hosts = ["login1.cluster.example", "login2.cluster.example:2222"]
c.SlurmSpawner.ssh_identity_file = "/etc/jupyterhub/keys/{username}"
c.SlurmSpawner.ssh_options = [
    "UserKnownHostsFile=/etc/jupyterhub/known_hosts",
    "StrictHostKeyChecking=yes",
]
c.SlurmSpawner.ssh_connect_timeout = 5  # then the next login node is tried
c.SlurmSpawner.ssh_failover_cooldown = 60  # a failed login node is tried last for this long
c.SlurmSpawner.ssh_control_persist = 60  # one shared connection per user and login node
# c.SlurmSpawner.ssh_env_method = "sendenv"  # only with AcceptEnv on every login node
