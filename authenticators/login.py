"""The hub's login page, minus the proxy's shared secret.

JupyterHub writes every request header into its log when a request ends in a 5xx
(``jupyterhub.log.log_request``; it hides only ``Authorization`` and ``Cookie``).
The front proxy's shared secret arrives on ``/hub/login``, so this handler takes
it out of ``request.headers`` in ``initialize()``, which tornado calls while
constructing the handler: before ``prepare()`` (the hub's current-user lookup, the
database), the login itself, or anything else of the hub's that could end in a 5xx.
(Only the hub's ``set_default_headers()`` runs earlier, from ``RequestHandler.__init__``;
if that failed there would be no handler, so no ``log_request`` either.)
The value is kept on the handler for the trust check and nowhere else.
"""

from jupyterhub.handlers.login import LoginHandler


class RemoteUserLoginHandler(LoginHandler):
    """``/hub/login`` for RemoteUserAuthenticator: the hub's own, with the secret header removed first."""

    def initialize(self, **kwargs):
        super().initialize(**kwargs)
        take = getattr(self.authenticator, "take_proxy_secret", None)
        # None: not taken here (the trust check then takes it itself)
        self.proxy_secret_values = take(self.request) if take is not None else None
