# ProfilesSpawner on a Slurm cluster: users pick a profile and its fields on the spawn form.
# Start: jupyterhub -f examples/profiles/jupyterhub_config.py   (as root, with sudo rights to run sbatch as users)
c = get_config()  # noqa

c.JupyterHub.spawner_class = "profiles"  # entry point of wrapspawner.ProfilesSpawner
c.JupyterHub.cleanup_servers = False     # batch jobs survive a hub restart; the hub finds them again
c.JupyterHub.allow_named_servers = True

# settings for every Slurm child (the child keeps its own defaults for anything not set)
c.SlurmSpawner.req_runtime = "01:00:00"
c.SlurmSpawner.start_timeout = 900       # the hub reads the child's value

c.ProfilesSpawner.default_profile = "slurm-small"
c.ProfilesSpawner.profiles = [
    # the wrapspawner 1.0.1 tuple form still works
    ("Small Slurm job (1 core, 2 GB, 1 hour)", "slurm-small", "batchspawner.SlurmSpawner",
     {"req_nprocs": "1", "req_memory": "2G", "req_partition": "debug"}),
    # the dict form: description, typed fields (validated on the server), visibility
    {
        "key": "slurm-custom",
        "display": "Slurm job, your resources",
        "description": "Pick partition, cores, memory and wall time. Queue waits apply.",
        "class": "batchspawner.SlurmSpawner",
        "config": {"req_partition": "debug"},
        "fields": {
            "partition": {"type": "choice", "choices": {"debug": "debug (default)"}, "default": "debug"},
            "nprocs": {"type": "int", "label": "CPU cores", "min": 1, "max": 8, "default": 2},
            "memory": {"type": "memory", "min": "512M", "max": "16G", "default": "4G"},
            "runtime": {"type": "walltime", "label": "Wall time", "max": "1-00:00:00", "default": "02:00:00"},
            "job_name": {"type": "text", "regex": r"[a-z][a-z0-9-]{0,30}", "label": "Job name",
                         "rule": "a lower-case letter, then up to 30 letters, digits or '-'",
                         "default": "notebook", "help": "Shown in the queue (squeue)."},
        },
        # Accounts, QoS, reservations, clusters and gres are admin only (they say who pays or which
        # policy applies): a field may not set them. Offer one profile per account instead, e.g.
        # "config": {"req_partition": "debug", "req_account": "proj042"}.
    },
    {
        "key": "gpu",
        "display": "GPU node (GPU group only)",
        "class": "batchspawner.SlurmSpawner",
        "config": {"req_partition": "gpu", "req_ngpus": "1"},
        "groups": ["gpu-users"],
    },
]
# To change the form: copy wrapspawner/templates/profiles_form.html into this folder and set
# c.ProfilesSpawner.template_paths = ["/etc/jupyterhub/templates"]
