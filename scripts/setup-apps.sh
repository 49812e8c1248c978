#!/bin/bash
# Web apps behind the hub's login (examples/apps/), as root. Idempotent; starts nothing.
#   - jupyter-server-proxy in the venv: the single-user server proxies /user/<name>/<app>/
#     to the app, behind the single-user server's hub OAuth.
#   - code-server (VS Code) from the npm registry, pinned to a 4.x release whose
#     engines field accepts Node 20 (Debian 12's nodejs); its postinstall builds native
#     modules, which needs a compiler, python3 and the X11/xkbfile/secret/krb5 headers.
#   - TigerVNC + noVNC (Debian packages) for the desktop profile (jupyter-server-proxy is
#     the websockify: a raw-socket proxy to Xvnc on a unix socket), an xterm as the session,
#     xauth for users' own X tools (the desktop writes its cookie file itself) and x11-utils
#     (xdpyinfo: tests/e2e/test_desktop_cotenant.py tries the display as another user).
#   - Xfce (Debian packages, no recommends: session, window manager, panel, desktop, terminal,
#     settings daemon, and dbus-x11 for its session bus) as the desktop profile's session: a
#     real desktop whose screen follows the browser window (noVNC resize=remote + Xvnc RandR).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV=${JHPC_VENV:-/opt/jupyterhub-hpc/venv}
CODE_SERVER_VERSION=${JHPC_CODE_SERVER_VERSION:-4.100.3}

need=()
for pkg in tigervnc-standalone-server tigervnc-tools novnc xauth x11-utils xterm xfonts-base ripgrep \
           xfce4-session xfwm4 xfce4-panel xfdesktop4 xfce4-terminal xfce4-settings dbus-x11 \
           build-essential python3 pkg-config libx11-dev libxkbfile-dev libsecret-1-dev libkrb5-dev ; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v code-server >/dev/null 2>&1 || ! code-server --version >/dev/null 2>&1; then
  # code-server's postinstall runs `npm install` in lib/vscode, where @vscode/ripgrep's own
  # postinstall downloads rg from GitHub (not reachable from sites that only mirror the
  # registries). So: install without scripts; in lib/vscode install without scripts, give
  # @vscode/ripgrep Debian's rg (its postinstall then skips the download) and build the native
  # modules (npm rebuild); then `npm rebuild` code-server itself: its native modules (argon2)
  # and its own postinstall, which now finds lib/vscode in place. npm_config_unsafe_perm: that
  # postinstall refuses to run as root without it. A private cache avoids racing another npm.
  cache=$(mktemp -d)
  # npm_config_yes: node-pty's install script runs `npx node-gyp`, which must not stop to ask
  export npm_config_cache="$cache" npm_config_unsafe_perm=true npm_config_fund=false npm_config_audit=false npm_config_yes=true
  root=$(npm root -g)
  rm -rf "$root/code-server"  # a half-installed leftover makes the nested installs fail
  npm install -g --ignore-scripts "code-server@${CODE_SERVER_VERSION}"
  (
    cd "$root/code-server/lib/vscode"
    npm install --omit=dev --ignore-scripts
    mkdir -p node_modules/@vscode/ripgrep/bin
    ln -sf "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
    npm rebuild
    cd "$root/code-server"
    npm rebuild
  )
  rm -rf "$cache"
  code-server --version >/dev/null
fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import jupyter_server_proxy' 2>/dev/null; then
  "$VENV/bin/pip" install -q jupyter-server-proxy
  chmod -R a+rX "$(dirname "$VENV")"
fi
echo "apps: code-server $(code-server --version 2>/dev/null | head -1); $(Xvnc -version 2>&1 | grep -m1 -o 'TigerVNC[^ ]* [^ ]*'); novnc $(dpkg-query -W -f='${Version}' novnc); xfce4-session $(dpkg-query -W -f='${Version}' xfce4-session)"
