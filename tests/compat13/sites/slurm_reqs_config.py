# A Slurm site (batchspawner 1.3 style): resources as req_* traits, its own script.
import batchspawner  # noqa: F401

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.Spawner.http_timeout = 120
c.SlurmSpawner.start_timeout = 300
c.SlurmSpawner.startup_poll_interval = 0.5
c.SlurmSpawner.exec_prefix = "sudo -E -u {username}"
c.SlurmSpawner.req_partition = "debug"
c.SlurmSpawner.req_runtime = "00:10:00"
c.SlurmSpawner.req_memory = "256M"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_options = "--comment=jupyterhub"
c.SlurmSpawner.req_prologue = "umask 0077\nexport JUPYTER_RUNTIME_DIR=$HOME/.local/share/jupyter/runtime"
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time={runtime}
#SBATCH --mem={memory}
#SBATCH --cpus-per-task={nprocs}
#SBATCH --output={homedir}/jupyterhub_slurmspawner_%j.log
#SBATCH --job-name=spawner-jupyterhub
#SBATCH --chdir={homedir}
#SBATCH --export={keepvars}
#SBATCH {options}

set -euo pipefail
{prologue}
which jupyterhub-singleuser || true
{srun} {cmd}
echo "jupyterhub-singleuser ended gracefully"
{epilogue}
"""
