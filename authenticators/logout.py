"""Logout for SSO: clear the hub session, then send the browser to the SSO's logout URL.

Without the second step the front proxy still holds its SSO session and the next
visit to /hub/ logs the same user straight back in.
"""

from jupyterhub.handlers.login import LogoutHandler


class RemoteUserLogoutHandler(LogoutHandler):
    """The hub's logout (cookie cleared, optional server shutdown), then a redirect."""

    async def render_logout_page(self):
        url = getattr(self.authenticator, "logout_redirect_url", "")
        if url:
            self.redirect(url, permanent=False)
        else:
            await super().render_logout_page()
