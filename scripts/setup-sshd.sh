#!/bin/bash
# OpenSSH for the submit-host tests, as root. Idempotent; starts nothing.
# Tests start their own sshd instances (own config, free loopback port, own PidFile) and stop them by PID
# (see tests/sshdtools.py). This only makes sure the programs, host keys and the privilege-separation
# directory exist.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends openssh-server openssh-client
fi
ssh-keygen -A >/dev/null                 # host keys that are missing (the postinst normally makes them)
install -d -m 0755 -o root -g root /run/sshd   # privilege-separation directory sshd insists on
/usr/sbin/sshd -V 2>&1 | head -1 || true
echo "sshd ready (not started)"
