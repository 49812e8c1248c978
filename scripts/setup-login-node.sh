#!/bin/bash
# A "login node" account for the 1.3-style exec_prefix e2e test (tests/e2e/test_compat13_e2e.py), as root.
# Idempotent; starts nothing. The test's own sshd (tests/sshdtools.py) lets this account in with a
# test key; it may run commands as alice and bob through sudo, as a site's hub account on a login node
# does with exec_prefix = "ssh login1 sudo -u {username}".
set -euo pipefail
id jhpclogin >/dev/null 2>&1 || useradd -m -s /bin/bash jhpclogin
rule='jhpclogin ALL=(alice,bob) NOPASSWD: ALL'
file=/etc/sudoers.d/jhpc-login
if [ "$(cat "$file" 2>/dev/null)" != "$rule" ]; then
  printf '%s\n' "$rule" > "$file.tmp"
  chmod 0440 "$file.tmp"
  visudo -cq -f "$file.tmp"
  mv "$file.tmp" "$file"
fi
echo "login-node account jhpclogin ready (sudo to alice, bob)"
