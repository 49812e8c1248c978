# Container images as a profile field (Apptainer/Singularity), with typed arguments from labels.
# See docs/apps.md section 2. Load after your hub settings.
import os

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "profiles"
c.JupyterHub.cleanup_servers = False
c.ProfilesSpawner.profiles = [
    {"key": "containers", "display": "Software in a container", "class": "batchspawner.SlurmSpawner",
     "description": "Runs your server inside an image your site curates.",
     "config": {"req_partition": os.environ.get("JHPC_PARTITION", "debug")},
     # the images: *.sif / *.simg files and sandbox folders in "dir"; their labels ending
     # _ARG_STR/_ARG_INT/_ARG_FLOAT/_ARG_BOOL declare the arguments users may set
     "container": {"dir": os.environ.get("JHPC_IMAGES", "/opt/images"),
                   "apptainer": os.environ.get("JHPC_APPTAINER", "apptainer"),
                   # the hub's venv must be visible inside the image (the server runs from it)
                   "binds": ["/opt/jupyterhub-hpc"], "refresh": 60},
     "fields": {"ngpus": {"type": "int", "min": 0, "max": 2, "default": 0, "label": "GPUs"},
                "runtime": {"type": "walltime", "max": "08:00:00", "default": "01:00:00"}}},
]
