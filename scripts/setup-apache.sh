#!/bin/bash
# Apache for the SSO e2e tests (tests/e2e/test_remote_user_apache.py), as root.
# Installs apache2 (the server) and apache2-utils (htpasswd) if missing. Starts
# nothing: each test starts its own Apache as an ordinary user on a free high port
# with examples/apache/httpd-standalone.conf, and stops it by PID.
# Idempotent and quiet when everything is there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/sbin/apache2 ] || need+=(apache2)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
echo "apache: $(/usr/sbin/apache2 -v | head -1)"
