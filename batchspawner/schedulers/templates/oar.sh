#!/bin/bash
#OAR -n {{ job_name or 'jupyterhub-singleuser' }}
{% if log_path %}#OAR -O {{ log_path }}
{% endif %}{% if homedir %}#OAR -d {{ homedir }}
{% endif %}{% if queue %}#OAR -q {{ queue }}
{% endif %}#OAR -l host=1/{% if ngpus %}gpu={{ ngpus }}/{% endif %}core={{ nprocs or 1 }}{% if runtime %},walltime={{ runtime }}{% endif %}
{% if account %}#OAR --project {{ account }}
{% endif %}{% if options %}#OAR {{ options }}
{% endif %}
# oarsub read this file when the job was submitted (written 0700 by the submit command): done with it
rm -f -- "$0"
exec 2>&1
trap 'echo SIGTERM received' TERM
{% if log_path %}chmod go= /proc/self/fd/1 2>/dev/null || :  # this log: its user's only
{% endif %}{% for name, value in job_env %}export {{ name }}={{ value }}
{% endfor %}{% if homedir %}cd "{{ homedir }}"
{% endif %}{% if hub_bin_dir %}export PATH={{ hub_bin_dir }}:"$PATH"{% endif %}
{{ prologue }}
{{ cmd }}
echo "jupyterhub-singleuser ended gracefully"
{{ epilogue }}
