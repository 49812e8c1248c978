#!/bin/bash
# Start, stop or describe a test cluster made of real machines in namespaces.
#
#   bash scripts/cluster/cluster.sh start NAME    build the root if needed, bring the cluster up
#                                                  (idempotent: a healthy running cluster is kept)
#   bash scripts/cluster/cluster.sh stop NAME     stop every process of the cluster (by PID),
#                                                  unmount, delete its namespaces and bridge
#   bash scripts/cluster/cluster.sh status NAME   exit 0 when up and healthy
#   bash scripts/cluster/cluster.sh env NAME      shell variables describing a running cluster
#   bash scripts/cluster/cluster.sh exec NAME MACHINE CMD...   run CMD as root in a machine
#
# Clusters (NAME):
#   current  Debian sid, Slurm 26.05: ctl (slurmctld; slurmdbd on MariaDB, the accounting database),
#            n1 n2 (slurmd, 1 CPU each; n2 has 2 GPUs gpu:a100 without devices), login (sshd);
#            partitions debug (n1 n2, default), gpu (n2) and cpu (n1); accounts physics and chem with alice
#            in both (physics: QOS normal, her default; chem: QOS long only)
#   lts      Debian trixie, Slurm 24.11: ctl, n1 (2 CPUs), login
#   condor   Debian trixie, HTCondor 23.9: login (central manager: collector, negotiator, and the
#            schedd; sshd), n1 (startd, 2 CPUs)
#
# Every machine: its own network namespace joined to the host bridge jhpc-NAME (IPv4
# 10.232.K.0/24 and IPv6 fd00:232:K::/64, the host being .1 / ::1; no default route, so nothing
# leaves the test subnet), its own hostname (a holder process with its own UTS namespace), its own
# overlayfs over the suite's shared root (own /run, /var, logs), munged with the cluster's own key,
# the host's /home bind-mounted (as NFS homes would be) and the host's users (same uid/gid).
# The compute nodes' Python is the root's own venv /opt/jhpc/venv (see build-root.sh); the package
# in it is refreshed from this checkout when the checkout's sources changed.
#
# The hub reaches the login node over ssh as the user, with the cluster's hub key
# ($RUN/hub_key, listed for every user in the login node's AuthorizedKeysFile).
# State lives in $JHPC_CLUSTER_CACHE/run/NAME; stop kills only processes whose root directory
# lies there, and the holders recorded there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$here/../.." && pwd)
CACHE=${JHPC_CLUSTER_CACHE:-/var/cache/jupyterhub-hpc/clusters}

cmd=${1:?usage: cluster.sh start|stop|status|env|exec NAME}
name=${2:?usage: cluster.sh $cmd NAME}
case $name in
  current) kind=slurm; suite=sid; K=1; machines="ctl:2 n1:3 n2:4 login:5"; nodes="n1 n2"; node_cpus=1
           accounting=slurmdbd; gpu_node=n2; gpu_gres=gpu:a100:2 ;;
  lts) kind=slurm; suite=trixie; K=2; machines="ctl:2 n1:3 login:5"; nodes="n1"; node_cpus=2 ;;
  condor) kind=condor; suite=condor; K=3; machines="login:2 n1:3"; nodes="n1"; node_cpus=2 ;;
  *) echo "cluster.sh: unknown cluster '$name' (current, lts or condor)" >&2; exit 2 ;;
esac
accounting=${accounting:-}; gpu_node=${gpu_node:-}; gpu_gres=${gpu_gres:-}
RUN=$CACHE/run/$name
root=$CACHE/roots/$suite
bridge=jhpc-$name
net4=10.232.$K
net6=fd00:232:$K
ns() { echo "jhpc-$name-$1"; }
addr() { local m; for m in $machines; do [ "${m%%:*}" = "$1" ] && { echo "${m#*:}"; return; }; done; return 1; }
holder() { cat "$RUN/m/$1/holder.pid" 2>/dev/null; }
in_machine() {  # in_machine MACHINE CMD... : as root in the machine's network and UTS namespaces and root
  local m=$1; shift
  nsenter -t "$(holder "$m")" -n -u chroot "$RUN/m/$m/merged" "$@" 9>&-  # daemons must not keep the lock
}

pkg_hash() {
  (cd "$checkout" && find batchspawner wrapspawner authenticators -type f \( -name '*.py' -o -path '*templates*' \) \
     -newer /dev/null -print 2>/dev/null | LC_ALL=C sort | xargs cat pyproject.toml setup.py | sha256sum | cut -c1-16)
}

machine_pids() {  # every process whose root directory is inside this cluster's machines
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case $r in "$RUN"/m/*) echo "${p#/proc/}" ;; esac
  done
}

do_stop() {
  local m pids i
  stop_mariadb
  # daemons and jobs first (their root is a machine's), then the holders
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(machine_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill $( [ "$i" -gt 5 ] && echo -9 ) $pids 2>/dev/null || :
    sleep 0.3
  done
  for m in $machines; do
    m=${m%%:*}
    local h; h=$(holder "$m" || :)
    if [ -n "$h" ] && [ -d "/proc/$h" ] && grep -q "jhpc-holder" "/proc/$h/cmdline" 2>/dev/null; then
      kill -9 "$h" 2>/dev/null || :
    fi
    rm -f "$RUN/m/$m/holder.pid"
    for p in $(ip netns pids "$(ns "$m")" 2>/dev/null); do kill -9 "$p" 2>/dev/null || :; done
  done
  # mounts under the cluster, deepest first
  if [ -d "$RUN" ]; then
    awk -v r="$RUN/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r mp; do
      umount -l "$mp" 2>/dev/null || :
    done
  fi
  for m in $machines; do
    m=${m%%:*}
    ip netns del "$(ns "$m")" 2>/dev/null || :
    ip link del "jh$K$m" 2>/dev/null || :
  done
  ip link del "$bridge" 2>/dev/null || :
  rm -f "$RUN/up"
}

nodes_up() {  # every node idle, mixed, allocated or completing
  if [ "$kind" = condor ]; then  # every execute node advertises its slots to the collector
    local m
    for m in $nodes; do
      in_machine login condor_status -af Machine 2>/dev/null | grep -q "^$m" || return 1
    done
    return 0
  fi
  local states
  states=$(in_machine ctl sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ')
  [ -n "$states" ] || return 1
  for s in $states; do case $s in idle|mix|alloc|comp) ;; *) return 1 ;; esac; done
}

healthy() {
  [ -f "$RUN/up" ] || return 1
  [ "$(cat "$RUN/up")" = "$(cat "$root/.jhpc-stamp" 2>/dev/null):$(pkg_hash)" ] || return 1
  local m h
  for m in $machines; do
    m=${m%%:*}
    h=$(holder "$m") || return 1
    grep -q "jhpc-holder-$name-$m" "/proc/$h/cmdline" 2>/dev/null || return 1  # alive (not a zombie)
  done
  if [ "$kind" = slurm ]; then in_machine ctl scontrol ping 2>/dev/null | grep -q UP || return 1; fi
  if [ -n "$accounting" ]; then  # slurmdbd answers from its database, and knows this cluster
    in_machine ctl sacctmgr -nP show cluster format=cluster 2>/dev/null | grep -qx "$name" || return 1
  fi
  in_machine login sh -c 'test -f /run/sshd.pid && kill -0 $(cat /run/sshd.pid)' || return 1
  nodes_up
}

refresh_users() {  # the host's users (uid 1000-59999) in the lower root, with the host's uid/gid
  python3 - "$root" <<'EOF'
import sys, pwd, grp
root = sys.argv[1]
users = [p for p in pwd.getpwall() if 1000 <= p.pw_uid < 60000]
groups = [g for g in grp.getgrall() if 1000 <= g.gr_gid < 60000]
names = {p.pw_name for p in users}
def keep(path, idx):
    lines = open(path).read().splitlines()
    out = []
    for line in lines:
        f = line.split(":")
        if path.endswith("shadow"):
            if f[0] in names: continue
        elif 1000 <= int(f[idx]) < 60000: continue
        out.append(line)
    return out
pw = keep(f"{root}/etc/passwd", 2) + [f"{p.pw_name}:x:{p.pw_uid}:{p.pw_gid}:{p.pw_gecos}:{p.pw_dir}:/bin/bash" for p in users]
gr = keep(f"{root}/etc/group", 2) + [f"{g.gr_name}:x:{g.gr_gid}:{','.join(g.gr_mem)}" for g in groups]
sh = keep(f"{root}/etc/shadow", 0) + [f"{p.pw_name}:*:20000:0:99999:7:::" for p in users]
for name, lines in (("passwd", pw), ("group", gr), ("shadow", sh)):
    open(f"{root}/etc/{name}", "w").write("\n".join(lines) + "\n")
EOF
}

refresh_package() {  # this checkout's package in the root's venv (job side), when it changed
  local h; h=$(pkg_hash)
  [ "$(cat "$root/opt/jhpc/pkg-stamp" 2>/dev/null)" = "$h" ] && return 0
  rm -rf "$root/tmp/jhpc-src"
  mkdir -p "$root/tmp/jhpc-src"
  (cd "$checkout" && tar cf - --exclude=__pycache__ batchspawner wrapspawner authenticators pyproject.toml setup.py README.md) \
    | tar xf - -C "$root/tmp/jhpc-src"
  mount -t proc proc "$root/proc"
  if ! chroot "$root" /opt/jhpc/venv/bin/pip install -q --no-deps --no-build-isolation --disable-pip-version-check \
       --force-reinstall /tmp/jhpc-src >"$CACHE/run/$name.pip.log" 2>&1; then
    umount -l "$root/proc"; tail -20 "$CACHE/run/$name.pip.log" >&2; exit 1
  fi
  umount -l "$root/proc"
  rm -rf "$root/tmp/jhpc-src"
  echo "$h" >"$root/opt/jhpc/pkg-stamp"
}

condor_config() {  # condor_config MACHINE: that machine's HTCondor settings (test pool only)
  local m=$1 daemons="MASTER, STARTD"
  [ "$m" = login ] && daemons="MASTER, COLLECTOR, NEGOTIATOR, SCHEDD"
  cat <<CONF
# test pool '$name' (scripts/cluster/cluster.sh); reachable only inside its namespaces
CONDOR_HOST = login
DAEMON_LIST = $daemons
NETWORK_INTERFACE = $net4.$(addr "$m")
ENABLE_IPV6 = FALSE
UID_DOMAIN = jhpc-$name
FILESYSTEM_DOMAIN = jhpc-$name
TRUST_UID_DOMAIN = True
SOFT_UID_DOMAIN = True
# host-based trust inside the test subnet (no tokens to hand around in a throwaway pool)
SEC_DEFAULT_AUTHENTICATION = OPTIONAL
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_CLIENT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_DEFAULT_ENCRYPTION = OPTIONAL
SEC_DEFAULT_INTEGRITY = OPTIONAL
ALLOW_READ = $net4.*, 127.0.0.1
ALLOW_WRITE = $net4.*, 127.0.0.1
ALLOW_DAEMON = $net4.*, 127.0.0.1
ALLOW_NEGOTIATOR = $net4.*, 127.0.0.1
ALLOW_ADMINISTRATOR = $net4.*, 127.0.0.1
ALLOW_OWNER = $net4.*, 127.0.0.1
# no mount namespace per job (jobs were held with "Failed to unshare the mount namespace")
MOUNT_UNDER_SCRATCH =
NUM_CPUS = $node_cpus
START = TRUE
SUSPEND = FALSE
PREEMPT = FALSE
KILL = FALSE
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
SCHEDD_INTERVAL = 2
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
CONF
}

write_config() {
  mkdir -p "$RUN/etc-slurm" "$RUN/etc-munge" "$RUN/etc-jhpc"
  local m a nodeconf="" gres
  for m in $nodes; do
    gres=""; [ "$m" = "$gpu_node" ] && gres=" Gres=$gpu_gres"
    nodeconf+="NodeName=$m NodeAddr=$net4.$(addr "$m") CPUs=$node_cpus RealMemory=1000$gres State=UNKNOWN"$'\n'
  done
  cat >"$RUN/etc-slurm/slurm.conf" <<EOF
# test cluster '$name' (scripts/cluster/cluster.sh)
ClusterName=$name
SlurmctldHost=ctl($net4.$(addr ctl))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
$(extra_slurm_conf)
${nodeconf}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
$(gpu_partitions)
EOF
  write_gres_conf
  write_slurmdbd_conf
  echo "CgroupPlugin=disabled" >"$RUN/etc-slurm/cgroup.conf"
  local munge_uid
  munge_uid=$(awk -F: '$1 == "munge" {print $3}' "$root/etc/passwd")
  if [ "$kind" = slurm ] && [ ! -s "$RUN/etc-munge/munge.key" ]; then
    dd if=/dev/urandom of="$RUN/etc-munge/munge.key" bs=1024 count=1 status=none
  fi
  if [ "$kind" = slurm ]; then
    chown -R "$munge_uid" "$RUN/etc-munge"
    chmod 700 "$RUN/etc-munge"
    chmod 400 "$RUN/etc-munge/munge.key"
  fi
  # the hub's key for the login node (root on the host -> any user on login)
  if [ ! -s "$RUN/hub_key" ]; then
    rm -f "$RUN/hub_key" "$RUN/hub_key.pub"
    ssh-keygen -q -t ed25519 -N "" -C "jhpc-hub@$name" -f "$RUN/hub_key"
  fi
  chmod 600 "$RUN/hub_key"
  cp "$RUN/hub_key.pub" "$RUN/etc-jhpc/authorized_keys"
  chmod 644 "$RUN/etc-jhpc/authorized_keys"
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost"
    for m in $machines; do echo "$net4.${m#*:} ${m%%:*}"; echo "$net6::${m#*:} ${m%%:*}"; done
    echo "$net4.1 hub"
  } >"$RUN/etc-jhpc/hosts"
  cat >"$RUN/etc-jhpc/sshd_config" <<EOF
ListenAddress 0.0.0.0
ListenAddress ::
PidFile /run/sshd.pid
AuthorizedKeysFile /etc/jhpc/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
}

# slurmdbd, MariaDB and GPUs of the clusters that have them
# shellcheck source=scripts/cluster/accounting.sh
. "$here/accounting.sh"

do_start() {
  if bash "$here/build-root.sh" "$suite" --check >/dev/null && healthy; then
    echo "cluster.sh: $name is up"; return 0
  fi
  do_stop
  bash "$here/build-root.sh" "$suite" >/dev/null
  refresh_users
  refresh_package
  write_config
  ip link add "$bridge" type bridge
  ip addr add "$net4.1/24" dev "$bridge"
  ip -6 addr add "$net6::1/64" dev "$bridge" nodad
  ip link set "$bridge" up
  local m a merged
  for m in $machines; do
    a=${m#*:}; m=${m%%:*}
    merged=$RUN/m/$m/merged
    rm -rf "$RUN/m/$m/work" "$RUN/m/$m/upper"  # every start is a fresh boot of the machine
    mkdir -p "$RUN/m/$m/upper" "$RUN/m/$m/work" "$merged"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$RUN/m/$m/upper,workdir=$RUN/m/$m/work" "$merged"
    mount -t proc proc "$merged/proc"
    mount --rbind /sys "$merged/sys"; mount --make-rslave "$merged/sys"
    mount --bind /dev "$merged/dev"
    mount --bind /dev/pts "$merged/dev/pts"
    mount --bind /home "$merged/home"
    mkdir -p "$merged/etc/jhpc"
    if [ "$kind" = slurm ]; then
      mount --bind "$RUN/etc-slurm" "$merged/etc/slurm"
      mount --bind "$RUN/etc-munge" "$merged/etc/munge"
    else
      condor_config "$m" >"$merged/etc/condor/config.d/99-jhpc.conf"
    fi
    mount --bind "$RUN/etc-jhpc" "$merged/etc/jhpc"
    machine_extras "$m" "$merged"
    mount -o remount,bind,ro "$merged/etc/jhpc" 2>/dev/null || :
    cp "$RUN/etc-jhpc/hosts" "$merged/etc/hosts"
    echo "$m" >"$merged/etc/hostname"
    rm -f "$merged/run/slurmctld.pid" "$merged/run/slurmd.pid" "$merged/run/sshd.pid"
    mkdir -p "$merged/run/munge" "$merged/run/sshd" "$merged/tmp"
    chmod 1777 "$merged/tmp"
    if [ "$kind" = slurm ]; then
      chroot "$merged" chown munge: /run/munge /var/lib/munge /var/log/munge
    else
      chroot "$merged" sh -c 'mkdir -p /run/condor /var/lock/condor && chown condor:condor /run/condor /var/lock/condor'
    fi
    ip netns add "$(ns "$m")"
    ip link add "jh$K$m" type veth peer name eth0 netns "$(ns "$m")"
    ip link set "jh$K$m" master "$bridge" up
    ip -n "$(ns "$m")" link set lo up
    ip -n "$(ns "$m")" addr add "$net4.$a/24" dev eth0
    ip -n "$(ns "$m")" -6 addr add "$net6::$a/64" dev eth0 nodad
    ip -n "$(ns "$m")" link set eth0 up
    # the holder: its own UTS namespace with the machine's name; its PID names the machine
    setsid ip netns exec "$(ns "$m")" unshare --uts bash -c "hostname $m; exec -a jhpc-holder-$name-$m sleep infinity" \
      </dev/null >/dev/null 2>&1 9>&- &
    echo $! >"$RUN/m/$m/holder.pid"
  done
  sleep 0.2
  for m in $machines; do
    m=${m%%:*}
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ "$(nsenter -t "$(holder "$m")" -u hostname 2>/dev/null)" = "$m" ] && break
      sleep 0.1
    done
    if [ "$kind" = slurm ]; then
      in_machine "$m" runuser -u munge -- /usr/sbin/munged
    else
      in_machine "$m" /usr/sbin/condor_master
    fi
  done
  if [ "$kind" = slurm ]; then
    start_accounting
    in_machine ctl /usr/sbin/slurmctld
    for m in $nodes; do in_machine "$m" /usr/sbin/slurmd; done
  fi
  in_machine login /usr/sbin/sshd -f /etc/jhpc/sshd_config -E /var/log/sshd.log
  local t0=$SECONDS
  until nodes_up; do
    if [ $((SECONDS - t0)) -gt 60 ]; then
      echo "cluster.sh: $name: nodes not up after 60 s:" >&2
      if [ "$kind" = slurm ]; then
        in_machine ctl sinfo -N >&2 || :
        tail -5 "$RUN/m/ctl/merged/var/log/slurmctld.log" >&2 || :
      else
        in_machine login condor_status >&2 || :
        tail -5 "$RUN/m/login/merged/var/log/condor/CollectorLog" >&2 || :
      fi
      exit 1
    fi
    sleep 0.5
  done
  echo "$(cat "$root/.jhpc-stamp"):$(pkg_hash)" >"$RUN/up"
  if [ "$kind" = slurm ]; then
    echo "cluster.sh: $name is up ($(in_machine ctl sbatch --version))"
  else
    echo "cluster.sh: $name is up ($(in_machine login condor_version | head -1))"
  fi
}

do_env() {
  local m
  echo "JHPC_CLUSTER=$name"
  echo "JHPC_CLUSTER_ROOT=$RUN/m"
  echo "JHPC_CLUSTER_HUB_IP=$net4.1"
  echo "JHPC_CLUSTER_HUB_IP6=$net6::1"
  echo "JHPC_CLUSTER_HUB_KEY=$RUN/hub_key"
  echo "JHPC_CLUSTER_NODES='$nodes'"
  for m in $machines; do
    echo "JHPC_CLUSTER_ADDR_${m%%:*}=$net4.${m#*:}"
    echo "JHPC_CLUSTER_ADDR6_${m%%:*}=$net6::${m#*:}"
    echo "JHPC_CLUSTER_HOLDER_${m%%:*}=$(holder "${m%%:*}")"
  done
}

lock() {  # one start/stop of a cluster at a time
  flock -w 600 9 || { echo "cluster.sh: $name is locked by another start/stop for 600 s" >&2; exit 1; }
}

case $cmd in
  start) mkdir -p "$RUN"; exec 9>"$CACHE/run/$name.lock"; lock; do_start ;;
  stop) mkdir -p "$RUN"; exec 9>"$CACHE/run/$name.lock"; lock; do_stop; echo "cluster.sh: $name stopped" ;;
  status) healthy ;;
  env) healthy || { echo "cluster.sh: $name is not up" >&2; exit 1; }; do_env ;;
  exec) m=${3:?machine}; shift 3; in_machine "$m" "$@" ;;
  *) echo "cluster.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
