# A centre's own spawner: its form yields queue, runtime and other (not all req_* traits),
# its script uses {other}, and a trait of its own holds several export lines set here.
from traitlets import Unicode

from batchspawner import SlurmSpawner

c = get_config()  # noqa: F821


class CentreSpawner(SlurmSpawner):
    req_env_text = Unicode("", help="Lines of environment setup for every job (admin).").tag(config=True)

    def _options_form_default(self):
        return """
<label for="queue">Queue</label>
<select name="queue"><option value="debug">debug</option><option value="long">long</option></select>
<label for="runtime">Hours</label><input name="runtime" value="1">
<label for="other">Project</label><input name="other" value="">
"""

    def options_from_form(self, formdata):
        hours = int(formdata.get("runtime", ["1"])[0] or 1)
        return {
            "queue": formdata.get("queue", ["debug"])[0],
            "runtime": f"{hours:02d}:00:00",
            "other": formdata.get("other", ["none"])[0] or "none",
        }


c.JupyterHub.spawner_class = CentreSpawner
c.CentreSpawner.req_env_text = "export OMP_NUM_THREADS=1\nexport CENTRE_SCRATCH=/scratch/$USER"
c.CentreSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={queue}
#SBATCH --time={runtime}
#SBATCH --comment=project:{other}
#SBATCH --export={keepvars}
{env_text}
{prologue}
{srun} {cmd}
"""
