#!/bin/bash
# Son of Grid Engine 8.1.9 (Debian 12 gridengine-*) on localhost, started by hand (no systemd), as root.
# Recipe and gotchas: /work/shared/REAL-COMPONENTS.md section 2. Coexists with the local Slurm
# (SGE uses ports 6444/6445 and its own spool). Idempotent: running daemons and an existing queue
# are left alone; the settings below are re-applied each time. Prints the daemons' PIDs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v sge_qmaster >/dev/null || ! command -v sge_execd >/dev/null || ! command -v qsub >/dev/null; then
  # the debconf question shared/gridenginemaster has no default: preseed it
  debconf-set-selections <<'SEL'
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string localhost
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridenginemaster string localhost
SEL
  apt-get install -y -q --no-install-recommends gridengine-master gridengine-exec gridengine-client \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends gridengine-master gridengine-exec gridengine-client; }
fi

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
common=$SGE_ROOT/$SGE_CELL/common
work=$(mktemp -d /tmp/setup-gridengine.XXXXXX)
trap 'rm -rf "$work"' EXIT
qmaster_pid=/var/spool/gridengine/qmaster/qmaster.pid   # qmaster ignores SGE_MASTER_PIDFILE
execd_pid=/var/run/gridengine/execd.pid
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Clients connect from 127.0.0.1, which resolves to "localhost": the master must be "localhost"
# and the real host name an alias of it, or every client gets "access denied".
restart_master=0
if [ "$(cat "$common/act_qmaster" 2>/dev/null)" != localhost ]; then
  echo localhost > "$common/act_qmaster"; restart_master=1
fi
if [ "$(hostname)" != localhost ] && ! grep -qx "localhost $(hostname)" "$common/host_aliases" 2>/dev/null; then
  echo "localhost $(hostname)" > "$common/host_aliases"; restart_master=1
fi
chown sgeadmin:sgeadmin "$common/act_qmaster" "$common/host_aliases" 2>/dev/null || true
install -d -o sgeadmin -g sgeadmin -m 0755 /var/run/gridengine

if [ "$restart_master" = 1 ] && running "$qmaster_pid"; then
  pid=$(cat "$qmaster_pid"); kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done   # ~10 s controlled shutdown
fi
running "$qmaster_pid" || SGE_MASTER_PIDFILE=/var/run/gridengine/qmaster.pid /usr/sbin/sge_qmaster
for _ in $(seq 1 150); do qconf -sh >/dev/null 2>&1 && break; sleep 0.2; done
qconf -sh >/dev/null || { echo "sge_qmaster does not answer" >&2; exit 1; }
qconf -sh | grep -qx localhost || qconf -ah localhost
qconf -ss 2>/dev/null | grep -qx localhost || qconf -as localhost

# schedule every second (default 15 s) so a spawn starts at once
qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
                    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
                    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' > "$work/sconf"
qconf -ssconf | cmp -s - "$work/sconf" || qconf -Msconf "$work/sconf"
# min_uid/min_gid 0 (default 1000 refuses root jobs); qconf -Mconf takes the config name from the file name
qconf -sconf global | sed -e 's/^min_uid .*/min_uid                      0/' \
                          -e 's/^min_gid .*/min_gid                      0/' > "$work/global"
qconf -sconf global | cmp -s - "$work/global" || qconf -Mconf "$work/global"

if ! qconf -sel 2>/dev/null | grep -qx localhost; then
  printf 'hostname localhost\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' > "$work/exechost"
  qconf -Ae "$work/exechost"
fi
running "$execd_pid" || SGE_EXECD_PIDFILE=$execd_pid /usr/sbin/sge_execd

# all.q: unix_behavior + /bin/bash, so the script's #!/bin/bash and `set -o pipefail` work
queue_attrs() {
  cat <<'Q'
qname                 all.q
hostlist              localhost
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               NONE
rerun                 FALSE
slots                 8
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
Q
}
if ! qconf -sql 2>/dev/null | grep -qx all.q; then
  queue_attrs > "$work/all.q"
  qconf -Aq "$work/all.q"
else
  qconf -mattr queue shell_start_mode unix_behavior all.q >/dev/null
  qconf -mattr queue shell /bin/bash all.q >/dev/null
fi

ok=0
for _ in $(seq 1 150); do   # ready when the queue instance shows no state flags (exec host reported)
  if qstat -f 2>/dev/null | awk '/^all.q@localhost/ {found=1; exit !(NF==5)} END {if (!found) exit 1}'; then ok=1; break; fi
  sleep 0.2
done
qstat -f
[ "$ok" = 1 ] || { echo "queue all.q@localhost did not become ready" >&2; exit 1; }
echo "sge_qmaster pid $(cat "$qmaster_pid") sge_execd pid $(cat "$execd_pid")"
