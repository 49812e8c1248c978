# Spawner.cmd as one string with an argument (a centre's config).
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.Spawner.cmd = "/opt/jupyterhub-hpc/venv/bin/jupyterhub-singleuser --FileContentsManager.delete_to_trash=False"
c.Spawner.args = ["--KernelSpecManager.ensure_native_kernel=False"]
c.SlurmSpawner.req_runtime = "00:30:00"
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --time={runtime}
#SBATCH --export={keepvars}
{srun} {cmd}
"""
