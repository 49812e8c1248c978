"""Shared pieces for the wrapspawner unit tests: a hub-like user with groups, a Slurm fake."""

from types import SimpleNamespace

from fakes import FakeRunner, Reply
from helpers import make_spawner


def slurm_responder(state="RUNNING localhost None"):
    def respond(argv, stdin):
        if argv[0] == "sbatch":
            return Reply(stdout="4242\n")
        if argv[0] == "squeue":
            line = state() if callable(state) else state
            if "%i" in argv[-1] and line.strip():  # the shared query lists job ids first
                line = f"{argv[5]} {line}"
            return Reply(stdout=line)
        return Reply()

    return respond


def make_wrapper(cls, name="alice", groups=(), **traits):
    spawner = make_spawner(cls, None, name=name, **traits)
    spawner.user.groups = [SimpleNamespace(name=g) for g in groups]
    return spawner


def fake_runner(state="RUNNING localhost None"):
    return FakeRunner(responder=slurm_responder(state))
