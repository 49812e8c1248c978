# wrapspawner 1.0 ProfilesSpawner: 4-tuples (display, key, class, config).
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "wrapspawner.ProfilesSpawner"
c.Spawner.http_timeout = 120
c.ProfilesSpawner.profiles = [
    ("Local server (testing)", "local", "jupyterhub.spawner.LocalProcessSpawner", {"ip": "0.0.0.0"}),
    ("Slurm: 1 core, 1 hour", "slurm1c", "batchspawner.SlurmSpawner",
     dict(req_nprocs="1", req_partition="debug", req_runtime="01:00:00", req_memory="1G")),
    ("Slurm: 2 cores, 4 hours, GPU", "slurm2g", "batchspawner.SlurmSpawner",
     dict(req_nprocs="2", req_partition="gpu", req_runtime="04:00:00", req_memory="8G",
          req_options="--gres=gpu:1")),
]
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time={runtime}
#SBATCH --cpus-per-task={nprocs}
#SBATCH --mem={memory}
#SBATCH {options}
#SBATCH --export={keepvars}
{prologue}
{srun} {cmd}
{epilogue}
"""
