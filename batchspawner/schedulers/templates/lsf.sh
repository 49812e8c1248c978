#!/bin/bash
#BSUB -J {{ job_name or 'jupyterhub-singleuser' }}
{% if log_path %}#BSUB -o {{ log_path }}
{% endif %}{% if homedir %}#BSUB -cwd {{ homedir }}
{% endif %}{% if queue %}#BSUB -q {{ queue }}
{% endif %}{% if nprocs %}#BSUB -n {{ nprocs }}
#BSUB -R "span[hosts=1]"
{% endif %}{% if memory %}#BSUB -M {{ memory }}
#BSUB -R "rusage[mem={{ memory }}]"
{% endif %}{% if runtime_lsf %}#BSUB -W {{ runtime_lsf }}
{% endif %}{% if ngpus %}#BSUB -gpu "num={{ ngpus }}"
{% endif %}{% if account %}#BSUB -P {{ account }}
{% endif %}{% if options %}#BSUB {{ options }}
{% endif %}
trap 'echo SIGTERM received' TERM
{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}
{{ prologue }}
{{ cmd }}
echo "jupyterhub-singleuser ended gracefully"
{{ epilogue }}
