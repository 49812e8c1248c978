"""The job's script and environment: request variables, the server's command, the token, the rendered script.

:class:`JobScript` is mixed into :class:`~batchspawner.spawner.BatchSpawnerBase`. User values reach the
script only through :meth:`JobScript._checked_script_vars` (validated, control characters refused).
"""

from __future__ import annotations

import os
import inspect
import re
import secrets
import shlex
import sys

from batchspawner.core import joblogs
from batchspawner.core.options import record_form_options
from batchspawner.commands.runner import CommandError, first_line as _first_line
from batchspawner.core.templating import format_template, has_control_chars
from batchspawner.core.errors import SpawnFailed


USERNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")


class JobScript:
    """Part of :class:`~batchspawner.spawner.BatchSpawnerBase` (see the module's docstring)."""

    # ---------------------------------------------------------------- helpers
    def _identity_vars(self):
        name = self.user.name
        if not USERNAME_RE.match(name):
            raise SpawnFailed(
                f"User name {name!r} cannot be used as a system user name for batch jobs."
            )
        return {"username": name, "homedir": self.req_homedir}

    def request_vars(self) -> set[str]:
        """Names of the template variables that come from ``req_*`` traits."""
        return {n[4:] for n in self.trait_names() if n.startswith("req_")}

    def get_req_subvars(self):
        """Template variables from every ``req_*`` trait (batchspawner 1.3 name)."""
        subvars = {n[4:]: getattr(self, n) for n in self.trait_names() if n.startswith("req_") and n != "req_keepvars"}
        # not cached as the trait's value: read early (a poll after a hub restart formats commands
        # with these), it would miss what get_env() holds only once a spawn starts
        configured = "req_keepvars" in self._trait_values
        subvars["keepvars"] = self.req_keepvars if configured else self._req_keepvars_default()
        return subvars

    def cmd_formatted_for_batch(self):
        """The command the job runs: wrapper + cmd + args, each word shell-quoted.

        A string ``cmd`` (``c.Spawner.cmd = "/path/jupyterhub-singleuser --Opt=x"``; JupyterHub
        keeps it as a one-element list) is a command line, as batchspawner 1.3 treated it (its
        script's shell split it): a one-element ``cmd`` with white space is split into words with
        shell rules (quote a path with a space inside it: ``"'/opt/my apps/x' --opt"``). A list
        of several elements keeps each element one word."""
        cmd = list(self.cmd)
        if len(cmd) == 1 and any(c.isspace() for c in cmd[0]):
            try:
                cmd = shlex.split(cmd[0])
            except ValueError as e:
                raise SpawnFailed(f"{type(self).__name__}.cmd is not a valid command line: {e}") from None
        words = shlex.split(self.batchspawner_singleuser_cmd) + cmd + list(self.get_args())
        return shlex.join(words)

    def get_env(self):
        env = super().get_env()
        # JupyterHub >= 5 no longer keeps PATH. Give the submit command one (the hub's own,
        # with its bin directory first); it also puts PATH in keepvars. This PATH reaches
        # sbatch and the job only when the submit runs without sudo (exec_prefix = "") or
        # through a sudo without secure_path: Debian's sudo replaces it with secure_path.
        # What makes the default config work is the absolute batchspawner_singleuser_cmd
        # (and hub_bin_dir, which the script template can put first on the job's PATH).
        if "PATH" not in env:
            hub_bin = os.path.dirname(sys.executable)
            path = os.environ.get("PATH", os.defpath)
            env["PATH"] = hub_bin + os.pathsep + path if hub_bin not in path.split(os.pathsep) else path
        for key in ("LANG", "LC_ALL"):
            if key in os.environ and key not in env:
                env[key] = os.environ[key]
        if self.token_via_file:
            env.pop("JUPYTERHUB_API_TOKEN", None)
            env.pop("JPY_API_TOKEN", None)
            env["JUPYTERHUB_API_TOKEN_FILE"] = self._token_path()
        return env

    def _token_path(self):
        if not getattr(self, "_token_file", None):
            directory = self.token_dir.format(homedir=self.req_homedir, username=self.user.name)
            self._token_file = os.path.join(directory, f".jupyterhub-hpc-token-{secrets.token_hex(8)}")
        return self._token_file

    async def _write_token_file(self):
        """Create the token file as the user: new file (noclobber), mode 0600, token on stdin."""
        argv = ["sh", "-c", 'set -C; umask 077; cat > "$1"', "write-token", self._token_path()]
        try:
            await self.runner.run(argv, env=self.command_env(), stdin=self.api_token)
        except CommandError as e:
            raise SpawnFailed(f"Could not hand the server its token: {_first_line(e.stderr) or e.reason}") from e

    async def _remove_token_file(self):
        path = getattr(self, "_token_file", None)
        if not path:
            return
        self._token_file = None
        try:
            await self.runner.run(["rm", "-f", "--", path], env=self.command_env(), timeout=10)
        except CommandError as e:
            self.log.warning("%s: could not remove token file %s: %s", self._log_name, path, e.reason or e)

    def command_env(self):
        """Environment for queries and cancels: the scheduler variables, no tokens (runners.py)."""
        return self.runner_policy.command_env()

    def command_vars(self, job_id=""):
        """Variables for formatting command words: request values, job_id, identity."""
        subvars = self.get_req_subvars()
        subvars.update(self._identity_vars())
        subvars["job_id"] = job_id
        return subvars

    def template_vars(self, user_values=None):
        subvars = self.get_req_subvars()
        subvars.update(user_values or {})
        if subvars.get("keepvars_extra"):
            subvars["keepvars"] = ",".join(v for v in (subvars["keepvars"], subvars["keepvars_extra"]) if v)
        subvars["cmd"] = self.cmd_formatted_for_batch()
        subvars["log_path"] = self.format_log_path(self.job_id_placeholder)
        subvars["hub_bin_dir"] = shlex.quote(self.hub_bin_dir) if self.hub_bin_dir else ""
        subvars["no_requeue"] = not self.follow_requeue  # issue 24
        return subvars

    def format_log_path(self, job_id):
        if not self.log_path:
            return ""
        return self.log_path.format(**joblogs.log_format_vars(self, job_id))

    def render_script(self, user_values=None):
        return format_template(self.batch_script, **self._checked_script_vars(user_values))

    def _checked_script_vars(self, user_values=None):
        """template_vars(), refused if a value holds a newline where the script does not allow one.

        A request trait the site configured (``req_*`` in the config or the class, e.g. a
        ``req_env_text`` of several ``export`` lines) is the site's own text and may span lines
        where the template gives it whole lines (a line that is only ``{env_text}`` or
        ``{{ env_text }}``), like prologue/epilogue; anywhere else (``#SBATCH -p {queue}``) a
        newline would add a line, so it is refused. A value a user chose (``user_options``, a
        wrapper's field in ``chosen_by_user``) never spans lines, wherever it goes."""
        subvars = self.template_vars(user_values)
        from_users = set(user_values or ()) | {k[4:] if k.startswith("req_") else k for k in self.chosen_by_user}
        whole_lines = set(re.findall(r"(?m)^[ \t]*(?:\{(\w+)\}|\{\{-?\s*(\w+)\s*-?\}\})[ \t]*$", self.batch_script))
        whole_lines = {a or b for a, b in whole_lines}
        site_text = (self.request_vars() & whole_lines) - {"username", "homedir"} - from_users
        site_text |= {"prologue", "epilogue", "cmd"} - from_users
        for key, value in subvars.items():
            if key in site_text:
                continue
            if isinstance(value, str) and has_control_chars(value):
                raise SpawnFailed(f"Template value {key!r} contains a newline or control character.")
        return subvars

    def run_options_from_form(self, form_data):
        """JupyterHub's call on a form post: the site's options_from_form, whose keys are then the
        site's own (``batchspawner.core.options.record_form_options``)."""
        options = super().run_options_from_form(form_data)
        if inspect.isawaitable(options):
            async def recorded():
                return record_form_options(self, await options)

            return recorded()
        return record_form_options(self, options)

    async def _get_batch_script(self, **subvars):
        """batchspawner 1.3's hook: the script text from the template variables.

        A subclass that overrides it is called with the checked variables
        (``_checked_script_vars``) and what it returns is submitted; ``super()._get_batch_script``
        renders ``batch_script`` with them."""
        return format_template(self.batch_script, **subvars)
