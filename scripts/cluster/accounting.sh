# Sourced by scripts/cluster/cluster.sh: the accounting database (slurmdbd on MariaDB) and the GPUs
# of a test cluster that has them (today "current": accounting=slurmdbd, gpu_node, gpu_gres).
#
# MariaDB runs by hand in the controller's machine (no systemd, no network: its unix socket only),
# its data in $RUN/mariadb (bind-mounted on the controller's /var/lib/mysql, kept across starts so
# a restart does not recreate the schema), tracked by its PID in $RUN/mariadb.pid. slurmdbd runs
# as the root's "slurm" user and reaches it over that socket (unix_socket authentication: no
# password anywhere). At every start the cluster, its accounts and QOS and alice's associations
# are created when missing (one sacctmgr query when they are all there):
#
#   physics  alice's default account, QOS normal
#   chem     QOS long only (alice's default QOS there)
#
# No AccountingStorageEnforce: users without associations (bob, ...) still run jobs; the spawn
# form offers each user the associations sacctmgr lists (batchspawner/polling/cluster.py).
# Variables from cluster.sh: name, RUN, root, accounting, gpu_node, gpu_gres, in_machine.

ACCT_USER=alice
ACCT_WANT=$'chem|long\nphysics|normal'  # sacctmgr -nP show assoc user=alice format=account,qos, sorted

extra_slurm_conf() {  # slurm.conf lines of the accounting and GPUs this cluster has
  if [ -n "$gpu_node" ]; then
    local kind=${gpu_gres#gpu:}; kind=${kind%%:*}
    echo "GresTypes=gpu"
    echo "AccountingStorageTRES=gres/gpu,gres/gpu:$kind"
  fi
  if [ -n "$accounting" ]; then
    echo "AccountingStorageType=accounting_storage/slurmdbd"
    echo "AccountingStorageHost=ctl"
  fi
}

GPU_DIR=/run/jhpc-gpu  # the GPU node's stand-in device files (its own /run; /dev is the host's)

gpu_partitions() {  # "gpu": the GPU node; "cpu": the other nodes (no GPUs); debug keeps them all
  [ -n "$gpu_node" ] || return 0
  local m others=""
  for m in $nodes; do [ "$m" = "$gpu_node" ] || others+="${others:+,}$m"; done
  echo "PartitionName=gpu Nodes=$gpu_node MaxTime=INFINITE State=UP"
  echo "PartitionName=cpu Nodes=$others MaxTime=INFINITE State=UP"
}

write_gres_conf() {  # GPUs without devices: AutoDetect off, File= naming empty files (Slurm 26.05
  # drops a file-less GPU line: "Ignoring file-less GPU gpu:a100 from final GRES list")
  rm -f "$RUN/etc-slurm/gres.conf"
  [ -n "$gpu_node" ] || return 0
  local kind=${gpu_gres#gpu:} count
  count=${kind##*:}; kind=${kind%%:*}
  printf 'AutoDetect=off\nNodeName=%s Name=gpu Type=%s File=%s/gpu[0-%s]\n' "$gpu_node" "$kind" "$GPU_DIR" \
    "$((count - 1))" >"$RUN/etc-slurm/gres.conf"
}

machine_extras() {  # machine_extras MACHINE MERGED: the database on the controller, the GPU files
  [ "$1" != ctl ] || mount_accounting "$2"
  if [ -n "$gpu_node" ] && [ "$1" = "$gpu_node" ]; then
    local kind=${gpu_gres#gpu:} i
    mkdir -p "$2$GPU_DIR"
    for i in $(seq 0 $((${kind##*:} - 1))); do : >"$2$GPU_DIR/gpu$i"; done
  fi
}

write_slurmdbd_conf() {
  rm -f "$RUN/etc-slurm/slurmdbd.conf"
  [ -n "$accounting" ] || return 0
  cat >"$RUN/etc-slurm/slurmdbd.conf" <<EOF
# test cluster '$name' (scripts/cluster/accounting.sh): its accounting database
AuthType=auth/munge
DbdHost=ctl
# as slurm.conf's SlurmUser (root here): slurmctld takes slurmdbd's updates (a change made with
# sacctmgr while the cluster runs) only from its own SlurmUser; with "slurm" each such change hung
# ("Security violation, REQUEST_PERSIST_INIT RPC from uid=64030" in slurmctld's log)
SlurmUser=root
PidFile=/run/slurmdbd/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=root
EOF
  chown 0:0 "$RUN/etc-slurm/slurmdbd.conf"
  chmod 600 "$RUN/etc-slurm/slurmdbd.conf"
}

mount_accounting() {  # mount_accounting MERGED: the database's directories in the controller's root
  [ -n "$accounting" ] || return 0
  local merged=$1 ids
  ids=$(awk -F: '$1 == "mysql" {print $3":"$4}' "$root/etc/passwd")
  mkdir -p "$RUN/mariadb" "$merged/var/lib/mysql" "$merged/run/mariadbd" "$merged/run/slurmdbd" "$merged/var/log/slurm"
  chown "$ids" "$RUN/mariadb" "$merged/run/mariadbd"
  chmod 700 "$RUN/mariadb"
  chroot "$merged" chown slurm: /run/slurmdbd /var/log/slurm
  mount --bind "$RUN/mariadb" "$merged/var/lib/mysql"
}

wait_for() {  # wait_for SECONDS WHAT CMD...: until CMD succeeds
  local limit=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then echo "cluster.sh: $name: $what not up after $limit s" >&2; return 1; fi
    sleep 0.1
  done
}

start_accounting() {  # MariaDB, slurmdbd, then the cluster's accounts (before slurmctld starts)
  [ -n "$accounting" ] || return 0
  if [ ! -d "$RUN/mariadb/mysql" ]; then  # first start: an empty database directory
    in_machine ctl mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
      --auth-root-authentication-method=socket >"$RUN/mariadb-init.log" 2>&1 || {
      tail -20 "$RUN/mariadb-init.log" >&2; return 1; }
  fi
  in_machine ctl sh -c 'setsid mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
      --socket=/run/mariadbd/mysqld.sock --pid-file=/run/mariadbd/mysqld.pid --log-error=/var/log/mariadb.log \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --innodb-snapshot-isolation=OFF \
      </dev/null >/dev/null 2>&1 & echo $!' >"$RUN/mariadb.pid"
  wait_for 30 MariaDB in_machine ctl mariadb-admin --socket=/run/mariadbd/mysqld.sock ping \
    || { tail -5 "$RUN/m/ctl/merged/var/log/mariadb.log" >&2; return 1; }
  in_machine ctl mariadb --socket=/run/mariadbd/mysqld.sock -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;"  # slurmdbd logs in as root through the socket
  in_machine ctl /usr/sbin/slurmdbd
  wait_for 60 slurmdbd in_machine ctl sacctmgr -n show cluster \
    || { tail -5 "$RUN/m/ctl/merged/var/log/slurm/slurmdbd.log" >&2; return 1; }
  if [ "$(in_machine ctl sacctmgr -nP show assoc cluster="$name" user="$ACCT_USER" format=account,qos | sort)" \
       != "$ACCT_WANT" ]; then
    local sam=(in_machine ctl sacctmgr -i)
    { "${sam[@]}" add cluster "$name"
      "${sam[@]}" add qos long
      "${sam[@]}" add account physics,chem cluster="$name"
      "${sam[@]}" add user "$ACCT_USER" account=physics defaultaccount=physics cluster="$name"
      "${sam[@]}" add user "$ACCT_USER" account=chem cluster="$name"
      "${sam[@]}" modify user "$ACCT_USER" where account=physics cluster="$name" set qos=normal defaultqos=normal
      "${sam[@]}" modify user "$ACCT_USER" where account=chem cluster="$name" set qos=long defaultqos=long
    } >"$RUN/sacctmgr.log" 2>&1 || :  # each "add" of what exists says so and fails: the check below judges
    local got; got=$(in_machine ctl sacctmgr -nP show assoc cluster="$name" user="$ACCT_USER" format=account,qos | sort)
    if [ "$got" != "$ACCT_WANT" ]; then
      echo "cluster.sh: $name: associations of $ACCT_USER are '$got', not '$ACCT_WANT'" >&2
      tail -20 "$RUN/sacctmgr.log" >&2; return 1
    fi
  fi
}

stop_mariadb() {  # slurmdbd, then MariaDB given time to shut down cleanly (the rest is killed by do_stop)
  [ -n "$accounting" ] || return 0
  local p f merged=$RUN/m/ctl/merged
  for f in "$merged/run/slurmdbd/slurmdbd.pid" "$RUN/mariadb.pid"; do
    p=$(cat "$f" 2>/dev/null) || continue
    rm -f "$f"
    [ -n "$p" ] && [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$merged" ] || continue
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 150); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  done
}
