# An LSF site.
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.LsfSpawner"
c.LsfSpawner.req_queue = "interactive"
c.LsfSpawner.req_nprocs = "4"
c.LsfSpawner.req_memory = "4000"
c.LsfSpawner.req_runtime = "2:00"
c.LsfSpawner.req_prologue = "module load python/3.11"
c.LsfSpawner.batch_script = """#!/bin/sh
#BSUB -R "select[type==any]"
#BSUB -R "rusage[mem={memory}]"
#BSUB -q {queue}
#BSUB -n {nprocs}
#BSUB -W {runtime}
#BSUB -J spawner-jupyterhub
#BSUB -o {homedir}/.jupyterhub.lsf.out
#BSUB -e {homedir}/.jupyterhub.lsf.err
{prologue}
{cmd}
{epilogue}
"""
