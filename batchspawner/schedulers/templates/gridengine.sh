#!/bin/bash
#$ -N {{ job_name or 'spawner-jupyterhub' }}
#$ -S /bin/bash
#$ -j y
{% if log_path %}#$ -o {{ log_path }}
{% endif %}{% if homedir %}#$ -wd {{ homedir }}
{% endif %}{% if keepvars %}#$ -v {{ keepvars }}
{% endif %}{% if queue %}#$ -q {{ queue }}
{% endif %}{% if runtime %}#$ -l h_rt={{ runtime }}
{% endif %}{% if memory and memory_resource %}#$ -l {{ memory_resource }}={{ memory }}
{% endif %}{% if nprocs and pe %}#$ -pe {{ pe }} {{ nprocs }}
{% endif %}{% if ngpus and gpu_resource %}#$ -l {{ gpu_resource }}={{ ngpus }}
{% endif %}{% if project %}#$ -P {{ project }}
{% endif %}{% if account %}#$ -A {{ account }}
{% endif %}{% if options %}#$ {{ options }}
{% endif %}
set -euo pipefail

trap 'echo SIGTERM received' TERM
{% if log_path %}chmod go= /proc/self/fd/1 2>/dev/null || :  # this log: its user's only
{% endif %}{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}
{{ prologue }}
{{ cmd }}
echo "jupyterhub-singleuser ended gracefully"
{{ epilogue }}
