# JupyterHub behind Apache SSO (jupyterhub-sso.conf), with jupyterhub-hpc's RemoteUserAuthenticator.
#
# Start the hub with two secrets in its environment, never in this file:
#   REMOTE_USER_PROXY_SECRET  the same value Apache adds as X-Proxy-Secret (openssl rand -hex 32)
#   JUPYTERHUB_CRYPT_KEY      encrypts auth_state in the hub database (openssl rand -hex 32)
c = get_config()  # noqa: F821

# configurable-http-proxy listens where Apache's JHUB_BACKEND points, on loopback only
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = 8000
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.cleanup_servers = False  # batch jobs survive a hub restart

c.JupyterHub.authenticator_class = "remote-user"  # or "remote-user-local" to check/create system accounts
c.RemoteUserAuthenticator.header_name = "REMOTE_USER"

# Trust: the shared secret (from $REMOTE_USER_PROXY_SECRET) AND Apache's address. The address
# checked is the one configurable-http-proxy appends to X-Forwarded-For, i.e. the host that
# connected to it: Apache. 127.0.0.1 here because Apache and the hub share a host. Every local
# user shares that address too, so without REMOTE_USER_PROXY_SECRET the hub refuses to start
# (RemoteUserAuthenticator.unsafe_trust_local_users = True would start it anyway: never on a
# host where untrusted users log in).
c.RemoteUserAuthenticator.trusted_proxy_networks = ["127.0.0.1/32"]
# Jobs on compute nodes must reach the hub: with c.JupyterHub.hub_ip on the host's cluster
# address (and hub_proxy_networks / trusted_proxy_networks there), local users can connect from
# that address as well. The hub lists every address of every interface of this host (IPv4 and
# IPv6) and, without the secret, refuses to start when either network includes one of them.

# Names. The demo's htpasswd users are bare names (alice). An SSO sending eppn-style names
# (alice@example.org) would use, to get "alice" and refuse every other realm:
# c.RemoteUserAuthenticator.strip_realm = True
# c.RemoteUserAuthenticator.accepted_realms = {"example.org"}
# or a regex: c.RemoteUserAuthenticator.username_extract_pattern = r"(?P<username>[a-z0-9]+)@example\.org"

# Groups and admin from the SSO
c.RemoteUserAuthenticator.groups_header = "X-Remote-User-Groups"
c.RemoteUserAuthenticator.groups_separator = ";"
c.RemoteUserAuthenticator.admin_groups = {"jhub-admins"}
c.Authenticator.manage_groups = True

# Who may use the hub: everyone the SSO lets through (or list allowed_users)
c.Authenticator.allow_all = True

# Logout ends the hub session, then the SSO session
c.RemoteUserAuthenticator.logout_redirect_url = "/sso/logged-out.html"
# mod_auth_openidc: "/redirect_uri?logout=https%3A%2F%2Fhub.example.org%2F"
# mod_shib:         "/Shibboleth.sso/Logout?return=https://hub.example.org/"

# SSO attributes into the job environment
from authenticators import auth_state_env_hook  # noqa: E402

c.Authenticator.enable_auth_state = True
c.RemoteUserAuthenticator.auth_state_headers = ["X-Remote-User-Email"]
c.Spawner.auth_state_hook = auth_state_env_hook({"SSO_EMAIL": "X-Remote-User-Email"})
# For batch spawners, keep the variable in the job: add it to BatchSpawnerBase.req_keepvars_extra.
