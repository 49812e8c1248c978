#!/bin/bash
#SBATCH --job-name={{ job_name or 'spawner-jupyterhub' }}
{% if log_path %}#SBATCH --output={{ log_path }}
#SBATCH --open-mode=append
{% endif %}{% if no_requeue %}#SBATCH --no-requeue
{% endif %}{% if homedir %}#SBATCH --chdir={{ homedir }}
{% endif %}{% if keepvars %}#SBATCH --export={{ keepvars }}
{% endif %}#SBATCH --get-user-env
{% if partition %}#SBATCH --partition={{ partition }}
{% endif %}{% if runtime %}#SBATCH --time={{ runtime }}
{% endif %}{% if memory %}#SBATCH --mem={{ memory }}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{ nprocs }}
{% endif %}{% if gres %}#SBATCH --gres={{ gres }}
{% endif %}{% if ngpus %}#SBATCH --gpus={% if gpu_type %}{{ gpu_type }}:{% endif %}{{ ngpus }}
{% endif %}{% if account %}#SBATCH --account={{ account }}
{% endif %}{% if qos %}#SBATCH --qos={{ qos }}
{% endif %}{% if reservation %}#SBATCH --reservation={{ reservation }}
{% endif %}{% if cluster %}#SBATCH --clusters={{ cluster }}
{% endif %}{% if options %}#SBATCH {{ options }}
{% endif %}
set -euo pipefail

trap 'echo SIGTERM received' TERM
{% if log_path %}chmod go= /proc/self/fd/1 2>/dev/null || :  # this log: its user's only
{% endif %}{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}
{{ prologue }}
{% if srun %}{{ srun }} {% endif %}{{ cmd }}
echo "jupyterhub-singleuser ended gracefully"
{{ epilogue }}
