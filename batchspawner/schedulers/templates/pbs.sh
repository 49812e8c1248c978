#!/bin/bash
#PBS -N {{ job_name or 'jupyterhub-singleuser' }}
#PBS -S /bin/bash
#PBS -j oe
{% if log_path %}#PBS -o {{ log_path }}
{% endif %}{% if keepvars %}#PBS -v {{ keepvars }}
{% endif %}{% if queue or host %}#PBS -q {{ queue }}{% if host %}@{{ host }}{% endif %}
{% endif %}{% if runtime %}#PBS -l walltime={{ runtime }}
{% endif %}#PBS -l select=1:ncpus={{ nprocs or 1 }}{% if memory %}:mem={{ memory }}{% endif %}{% if ngpus %}:ngpus={{ ngpus }}{% endif %}
{% if account %}#PBS -A {{ account }}
{% endif %}{% if project %}#PBS -P {{ project }}
{% endif %}{% if options %}#PBS {{ options }}
{% endif %}
{% if homedir %}cd "{{ homedir }}"
{% endif %}trap 'echo SIGTERM received' TERM
{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}
{{ prologue }}
{{ cmd }}
echo "jupyterhub-singleuser ended gracefully"
{{ epilogue }}
