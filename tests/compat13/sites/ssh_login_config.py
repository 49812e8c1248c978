# The hub is not a Slurm client: every command goes over ssh to a login node, as the user.
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.exec_prefix = "ssh -o BatchMode=yes -i /etc/jupyterhub/ssh/id_ed25519 {username}@login1.example.org"
c.SlurmSpawner.batch_query_cmd = r"squeue -h -j {job_id} -o '%T\ %B-144.example.org'"
c.SlurmSpawner.state_exechost_re = r"\s+(\S+)$"
c.SlurmSpawner.req_partition = "interactive"
c.SlurmSpawner.req_runtime = "08:00:00"
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time={runtime}
#SBATCH --output={homedir}/.jupyterhub.%j.log
#SBATCH --export={keepvars}
{srun} {cmd}
"""
