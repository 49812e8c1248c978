#!/bin/bash
# Installs FAKE scheduler command-line tools for tests:  install.sh DIR FLAVOUR
#
# Torque, PBS Pro, Moab, LSF and HTCondor daemons cannot be installed on the test
# machines, so tests use these fakes instead (tests/fakesched/*.py). FLAVOUR is
# torque | pbs | moab | lsf | condor. DIR becomes one fake cluster:
#   DIR/bin    the flavour's commands (qsub qstat qdel tracejob | msub mdiag mjobctl canceljob checkjob |
#              bsub bjobs bkill bhist | condor_submit condor_q condor_history condor_rm); the history
#              commands (tracejob, checkjob, bhist, condor_history) print the documented formats of
#              jobs the fake ended or cancelled: fakes, not real schedulers
#   DIR/lib    copies of the fake's Python files (run by /usr/bin/python3, readable by job users)
#   DIR/state  the job table, writable by every user (sticky, like /tmp)
# FAKESCHED_PENDING_SECONDS (queue wait, default 0.5) and FAKESCHED_KEEP_SECONDS (how long
# finished jobs stay listed, default 30) are fixed into the wrappers at install time.
set -euo pipefail
dir=${1:?usage: install.sh DIR FLAVOUR}
flavour=${2:?usage: install.sh DIR FLAVOUR}
here=$(cd "$(dirname "$0")" && pwd)
case "$flavour" in
  torque|pbs) cmds="qsub qstat qdel tracejob" ;;
  moab) cmds="msub mdiag mjobctl canceljob checkjob" ;;
  lsf) cmds="bsub bjobs bkill bhist" ;;
  condor) cmds="condor_submit condor_q condor_history condor_rm" ;;
  *) echo "install.sh: unknown flavour $flavour (torque, pbs, moab, lsf, condor)" >&2; exit 2 ;;
esac
mkdir -p "$dir/bin" "$dir/lib" "$dir/state/jobs"
chmod 755 "$dir" "$dir/bin" "$dir/lib"
chmod 1777 "$dir/state" "$dir/state/jobs"
touch "$dir/state/next_id" && chmod 666 "$dir/state/next_id"
cp "$here/core.py" "$here/formats.py" "$here/cli.py" "$dir/lib/"
chmod 644 "$dir/lib/"*.py
for cmd in $cmds; do
  cat > "$dir/bin/$cmd" <<WRAP
#!/bin/sh
# FAKE $flavour '$cmd' for jupyterhub-hpc tests: not a real scheduler (see tests/fakesched).
FAKESCHED_DIR='$dir' FAKESCHED_FLAVOUR='$flavour' \\
FAKESCHED_PENDING_SECONDS='${FAKESCHED_PENDING_SECONDS:-0.5}' FAKESCHED_KEEP_SECONDS='${FAKESCHED_KEEP_SECONDS:-30}' \\
exec /usr/bin/python3 '$dir/lib/cli.py' '$cmd' "\$@"
WRAP
  chmod 755 "$dir/bin/$cmd"
done
echo "$dir/bin"
