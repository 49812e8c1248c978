"""Test doubles that stand in for *how* commands run, never for what the code decides.

FakeRunner has the CommandRunner interface: it records each argv (with env and
stdin) and answers from a queue of replies or a responder function. Replies are
real output captured from Slurm 22.05 on this machine kind (tests/fixtures).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

from batchspawner.commands.runner import CommandError, CommandResult, CommandTimeout

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def fixture(path: str) -> str:
    """A fixture file without its leading '#' header lines (which name the source)."""
    text = (FIXTURES / path).read_text()
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


@dataclass
class Reply:
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    delay: float = 0.0
    timeout: bool = False


@dataclass
class FakeRunner:
    """Records calls; answers with ``responder(argv, stdin) -> Reply``."""

    responder: object = None
    prefix: list = field(default_factory=list)
    remote_shell: bool = False
    timeout: float = 30.0
    calls: list = field(default_factory=list)

    def build_argv(self, argv):
        return list(self.prefix) + list(argv)

    async def run(self, argv, *, env=None, stdin=None, timeout=None, check=True, cwd=None):
        argv = list(argv)
        self.calls.append(SimpleNamespace(argv=argv, env=env, stdin=stdin, cwd=cwd))
        reply = self.responder(argv, stdin) if self.responder else Reply()
        if isinstance(reply, str):
            reply = Reply(stdout=reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.timeout:
            raise CommandTimeout(argv, reason="timed out after 1 s")
        result = CommandResult(argv, reply.returncode, reply.stdout, reply.stderr)
        if check and reply.returncode != 0:
            raise CommandError(argv, reply.returncode, reply.stdout, reply.stderr)
        return result

    def commands(self):
        return [c.argv[0] for c in self.calls]
