#!/bin/bash
# Build (once per machine) the Debian root file system a test cluster's machines share:
#
#   bash scripts/cluster/build-root.sh SUITE      SUITE: sid (Slurm 26.05), trixie (Slurm 24.11)
#                                                  or condor (Debian trixie with HTCondor 23.9)
#   bash scripts/cluster/build-root.sh SUITE --check   exit 0 when the cached root is up to date
#
# The root lands in $JHPC_CLUSTER_CACHE/roots/SUITE (default /var/cache/jupyterhub-hpc/clusters),
# outside the checkout, stamped with a hash of this script (each suite's own line only for its
# own root): a changed script rebuilds it, an unchanged one returns at once. A build goes to SUITE.new and is renamed only when complete, so
# an interrupted build never leaves a half root that looks finished.
#
# Contents: debootstrap --variant=minbase, Slurm (controller, node daemon, client), munge, sshd,
# for sid also slurmdbd and MariaDB (the accounting database of cluster "current"),
# and the root's own python3 with a venv /opt/jhpc/venv holding JupyterHub 6.1 (the hub's
# major), JupyterLab and this package (its job side: batchspawner-singleuser). pip runs on the
# host's network during the build; no daemon is started (policy-rc.d refuses them).
# The package in the venv is refreshed from the checkout by scripts/cluster/cluster.sh when the
# checkout changed (a hash of its sources), so a code change does not rebuild the root.
set -euo pipefail
suite=${1:?usage: build-root.sh sid|trixie|condor}
# each suite's own line (#@suite): its packages enter its stamp as values, so a change to one
# suite's line rebuilds that suite's root only
extra=""
case $suite in
  sid) dist=sid; sched="slurmctld slurmd slurm-client munge"; extra="slurmdbd mariadb-server" ;;  #@suite
  trixie) dist=trixie; sched="slurmctld slurmd slurm-client munge" ;;  #@suite
  condor) dist=trixie; sched="htcondor" ;;  #@suite
  *) echo "build-root.sh: unknown suite '$suite' (sid, trixie or condor)" >&2; exit 2 ;;
esac
CACHE=${JHPC_CLUSTER_CACHE:-/var/cache/jupyterhub-hpc/clusters}
MIRROR=${JHPC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
JH_SPEC=${JHPC_NODE_JUPYTERHUB:-jupyterhub==6.1.*}
root=$CACHE/roots/$suite
stamp=$( { grep -v '#@suite$' "$0"; echo "$suite $dist $sched $extra $MIRROR $JH_SPEC"; } | sha256sum | cut -c1-16)

if [ -f "$root/.jhpc-stamp" ] && [ "$(cat "$root/.jhpc-stamp")" = "$stamp" ]; then
  echo "$root"
  exit 0
fi
[ "${2:-}" = "--check" ] && exit 1
if grep -qs " $root/" /proc/mounts || grep -qs " $root " /proc/mounts; then
  echo "build-root.sh: $root is mounted (a cluster runs on it): stop it first (scripts/cluster/cluster.sh stop NAME)" >&2
  exit 1
fi

mkdir -p "$CACHE/roots"
new=$root.new
umount_all() {
  # mounts under the build root, deepest first
  awk -v r="$new" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || :
  done
}
umount_all
if grep -qs " $new/" /proc/mounts; then echo "build-root.sh: could not unmount under $new" >&2; exit 1; fi
rm -rf "$new"
trap umount_all EXIT
t0=$(date +%s)
echo "build-root.sh: debootstrap $suite -> $new" >&2
debootstrap --variant=minbase "$dist" "$new" "$MIRROR" >"$CACHE/roots/$suite.debootstrap.log" 2>&1 || {
  tail -20 "$CACHE/roots/$suite.debootstrap.log" >&2; exit 1; }

# no daemon starts from a package script (they would run with the host's network)
printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
chmod 755 "$new/usr/sbin/policy-rc.d"
echo 'Acquire::Check-Valid-Until "false";' >"$new/etc/apt/apt.conf.d/99jhpc-valid-until"
cp /etc/resolv.conf "$new/etc/resolv.conf"
mount -t proc proc "$new/proc"
mount --bind /dev "$new/dev"
mount --bind /dev/pts "$new/dev/pts"
chroot "$new" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
chroot "$new" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  $sched $extra openssh-server openssh-client python3 python3-venv \
  procps iproute2 ca-certificates >"$CACHE/roots/$suite.apt.log" 2>&1 || {
  tail -20 "$CACHE/roots/$suite.apt.log" >&2; exit 1; }
chroot "$new" apt-get clean

# the host's own extra certificate authorities (a site's TLS-inspecting proxy), so pip in the
# root trusts what pip on the host trusts
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$new/usr/local/share/ca-certificates/"
  chroot "$new" update-ca-certificates >/dev/null 2>&1
fi
# the compute nodes' own Python stack: the root's python3, its own venv
chroot "$new" python3 -m venv /opt/jhpc/venv
chroot "$new" /opt/jhpc/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
  "$JH_SPEC" "jupyterlab>=4" "setuptools>=77" "prometheus_client" "jinja2>=3" >"$CACHE/roots/$suite.pip.log" 2>&1 || {
  tail -20 "$CACHE/roots/$suite.pip.log" >&2; exit 1; }

# what the clusters' scripts expect in every machine
mkdir -p "$new/etc/slurm" "$new/var/spool/slurmd" "$new/var/spool/slurmctld" "$new/run/sshd"
if [ "$suite" = condor ]; then
  # what the package scripts would make through systemd-tmpfiles (absent in minbase)
  chroot "$new" sh -c 'mkdir -p /run/condor /var/lock/condor /var/log/condor /var/lib/condor/spool /var/lib/condor/execute
                       chown condor:condor /run/condor /var/lock/condor /var/log/condor /var/lib/condor /var/lib/condor/spool /var/lib/condor/execute'
fi
chroot "$new" sh -c 'rm -f /etc/ssh/ssh_host_*; ssh-keygen -A' >/dev/null

umount_all
trap - EXIT
echo "$stamp" >"$new/.jhpc-stamp"
rm -rf "$root.old"
[ -d "$root" ] && mv "$root" "$root.old"
mv "$new" "$root"
rm -rf "$root.old"
echo "build-root.sh: $suite built in $(( $(date +%s) - t0 )) s" >&2
echo "$root"
