# A site subclass that adds lines to every script through 1.3's _get_batch_script hook.
import shlex

from batchspawner import SlurmSpawner

c = get_config()  # noqa: F821


class HookedSlurmSpawner(SlurmSpawner):
    async def _get_batch_script(self, **subvars):
        subvars["site_exports"] = "\n".join(
            f"export {name}={shlex.quote(value)}" for name, value in sorted(self.site_env().items())
        )
        script = await super()._get_batch_script(**subvars)
        return script + "# submitted by the site's hub\n"

    def site_env(self):
        return {"SITE_NAME": "example cluster", "SITE_SUPPORT": "hpc-help@example.org"}


c.JupyterHub.spawner_class = HookedSlurmSpawner
c.HookedSlurmSpawner.req_runtime = "01:00:00"
c.HookedSlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --time={runtime}
#SBATCH --export={keepvars}
{site_exports}
{srun} {cmd}
"""
