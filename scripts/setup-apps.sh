#!/bin/bash
# Web apps behind the hub's login (examples/apps/), as root. Idempotent; starts nothing.
#   - jupyter-server-proxy in the venv: the single-user server proxies /user/<name>/<app>/
#     to the app, behind the single-user server's hub OAuth.
#   - code-server (VS Code) from the npm registry, pinned to the last 4.x release whose
#     engines field accepts Node 20 (Debian 12's nodejs); its postinstall builds native
#     modules, which needs a compiler, python3 and the X11/xkbfile/secret/krb5 headers.
#   - TigerVNC + noVNC (Debian packages) for the desktop profile (jupyter-server-proxy is
#     the websockify: a raw-socket proxy to Xvnc on a unix socket), xauth for its X cookie and
#     an xterm as the session.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}
CODE_SERVER_VERSION=${JHPC_CODE_SERVER_VERSION:-4.100.3}

need=()
for pkg in tigervnc-standalone-server tigervnc-tools novnc xauth xterm xfonts-base \
           build-essential python3 pkg-config libx11-dev libxkbfile-dev libsecret-1-dev libkrb5-dev ; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v code-server >/dev/null 2>&1; then
  # code-server's postinstall refuses to run as root unless npm_config_unsafe_perm is set
  # (a private npm cache: its postinstall runs a nested npm install that must not race another npm)
  cache=$(mktemp -d)
  rm -rf "$(npm root -g)/code-server"  # a half-installed leftover makes the nested install fail
  npm_config_unsafe_perm=true npm_config_cache="$cache" npm install -g --no-fund --no-audit "code-server@${CODE_SERVER_VERSION}"
  rm -rf "$cache"
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import jupyter_server_proxy' 2>/dev/null; then
  "$VENV/bin/pip" install -q jupyter-server-proxy
  chmod -R a+rX "$(dirname "$VENV")"
fi
echo "apps: code-server $(code-server --version 2>/dev/null | head -1); $(Xvnc -version 2>&1 | grep -m1 -o 'TigerVNC[^ ]* [^ ]*'); novnc $(dpkg-query -W -f='${Version}' novnc)"
