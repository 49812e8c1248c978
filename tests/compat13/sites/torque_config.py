# A Torque/PBS site.
c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.TorqueSpawner"
c.TorqueSpawner.req_queue = "batch"
c.TorqueSpawner.req_nprocs = "2"
c.TorqueSpawner.req_memory = "4gb"
c.TorqueSpawner.req_runtime = "02:00:00"
c.TorqueSpawner.batch_script = """#!/bin/sh
#PBS -q {queue}
#PBS -l walltime={runtime}
#PBS -l nodes=1:ppn={nprocs}
#PBS -l mem={memory}
#PBS -N jupyterhub-singleuser
#PBS -v {keepvars}
#PBS {options}
{prologue}
{cmd}
{epilogue}
"""
