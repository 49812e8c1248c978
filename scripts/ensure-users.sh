#!/bin/bash
# Creates local non-root users (default: alice bob) for the demo and the tests.
set -euo pipefail
for u in "${@:-alice bob}"; do
  for name in $u; do
    id "$name" >/dev/null 2>&1 || useradd -m -s /bin/bash "$name"
  done
done
