"""Issue 12's query fault matrix on the FAKE Torque tools (tests/fakesched), through the shared code.

No hub: five TorqueSpawners with the real CommandRunner poll five real fake-Torque jobs
(real processes) through the shared poller, as the hub's poll() would. A wrapper in front
of ``qstat`` misbehaves for the batched query (``qstat -x ID ID ...``), the per-job one
(``qstat -x ID``) or both; ``qdel`` is the fake's own. For every fault: 5/5 kept (poll()
returns None), no qdel sent, every job still running in the fake scheduler; after the
fault clears every job is known again within two rounds; then a real ``qdel`` of one job
is noticed within two rounds (poll() returns, the job was cancelled before being
forgotten: the fake's own record says cancelled), and the other four stay.
"""

import asyncio
import json
import os
import shutil
import tempfile

import pytest
from unit.helpers import make_spawner

import fakesched
from batchspawner import JobState, TorqueSpawner
from batchspawner.polling.status import StatusPoller

FAULT_QSTAT = r"""#!/bin/sh
ids=0
for a in "$@"; do case "$a" in [0-9]*) ids=$((ids + 1)) ;; esac; done
kind=per-job; [ $ids -gt 1 ] && kind=batched
echo "$kind $*" >> {log}
fault=""
if [ -e {flag} ]; then
  read mode target < {flag}
  if [ "$target" = both ] || [ "$target" = "$kind" ]; then fault=$mode; fi
fi
case "$fault" in
  controller-down) echo 'qstat: cannot connect to server fakeserver (errno=111) Connection refused' >&2; exit 1 ;;
  never-seen) echo 'qstat: the flux capacitor is out of alignment (code 88)' >&2; exit 7 ;;
  random-bytes) head -c 300 /dev/urandom; exit 0 ;;
  truncated) {real} "$@" | cut -c1-40; exit 0 ;;
  header-only) echo '<?xml version="1.0"?>'; exit 0 ;;
  hang) sleep 30; exit 0 ;;
  empty) exit 0 ;;
  partial) {real} "$@" | python3 -c 'import re,sys; sys.stdout.write(re.sub(r"<Job>.*?</Job>", "", sys.stdin.read(), count=1))'; exit 0 ;;
  invalid-job-id) echo "qstat: Unknown Job Id Error $1" >&2; exit 153 ;;
esac
exec {real} "$@"
"""

MATRIX = [
    ("controller-down", "both"),
    ("never-seen", "both"),
    ("random-bytes", "both"),
    ("truncated", "both"),
    ("header-only", "both"),
    ("hang", "both"),
    ("empty", "batched"),
    ("empty", "per-job"),
    ("empty", "both"),
    ("partial", "batched"),
    ("invalid-job-id", "batched"),
]
INTERVAL = 0.3


@pytest.fixture
def cluster_dir():
    directory = tempfile.mkdtemp(prefix="jhpc-fakesched-faults-")
    os.chmod(directory, 0o755)
    yield directory
    fakesched.kill_leftovers(directory)
    shutil.rmtree(directory, ignore_errors=True)


def batched_rounds(log):
    with open(log) as f:
        return sum(1 for line in f if line.startswith("batched "))


async def test_torque_fault_matrix_through_the_shared_code(cluster_dir, monkeypatch):
    bindir = fakesched.install(cluster_dir, "torque", pending_seconds=0.2, keep_seconds=30)
    wrapdir = os.path.join(cluster_dir, "wrap")
    os.mkdir(wrapdir)
    log, flag = os.path.join(cluster_dir, "qstat-calls.log"), os.path.join(cluster_dir, "qstat-fault")
    shim = os.path.join(wrapdir, "qstat")
    with open(shim, "w") as f:
        f.write(FAULT_QSTAT.format(log=log, flag=flag, real=os.path.join(bindir, "qstat")))
    os.chmod(shim, 0o755)
    open(log, "w").close()
    monkeypatch.setenv("PATH", f"{wrapdir}:{bindir}:{os.environ['PATH']}")

    def new_spawner(i):
        return make_spawner(
            TorqueSpawner, name=f"user{i}", exec_prefix="", batchspawner_singleuser_cmd="/usr/bin/env",
            cmd=["sleep", "600"], log_path=os.path.join(cluster_dir, "job.log"), req_homedir=cluster_dir,
            status_interval=INTERVAL, status_min_interval=0.05, status_max_interval=1.2, command_timeout=1,
            startup_poll_interval=0.05,
        )

    async def submit(i):
        sp = new_spawner(i)
        sp.job_id = await sp.submit_batch_script()
        for _ in range(100):
            if (await sp.query_job_status()).state is JobState.RUNNING:
                return sp
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {sp.job_id} never ran")

    def fake_state(job_id):
        return fakesched.jobs(cluster_dir)[int(job_id.split(".")[0])]["state"]

    spawners = [await submit(i) for i in range(5)]
    report = []
    try:
        for n, (fault, target) in enumerate(MATRIX):
            with open(flag, "w") as f:
                f.write(f"{fault} {target}\n")
            for _ in range(4):  # several rounds while faulty, as the hub polls
                results = await asyncio.gather(*(sp.poll() for sp in spawners))
                assert results == [None] * 5, f"{fault}/{target}: {results}"
                await asyncio.sleep(INTERVAL)
            assert all(fake_state(sp.job_id) == "running" for sp in spawners), f"{fault}/{target}"
            assert not any(sp.leftovers.cancelled for sp in spawners), f"{fault}/{target}: a cancel was sent"
            os.unlink(flag)

            poller = spawners[0].status_poller()
            start = batched_rounds(log)
            for _ in range(200):
                if batched_rounds(log) >= start + 2 and poller.answer_kind == "complete":
                    break
                await asyncio.sleep(0.05)
            assert batched_rounds(log) - start <= 3, f"{fault}/{target}: known again only after {batched_rounds(log) - start} rounds"
            statuses = [(await poller.status(sp.job_id, watcher=sp)) for sp in spawners]
            assert {s.state for s in statuses} == {JobState.RUNNING}, f"{fault}/{target}: {[s.describe() for s in statuses]}"

            victim = spawners[n % 5]
            proc = await asyncio.create_subprocess_exec(os.path.join(bindir, "qdel"), victim.job_id)
            assert await proc.wait() == 0
            before = batched_rounds(log)
            victim_job = victim.job_id  # poll() forgets it once it saw the end (as 1.3's poll did)
            code = None
            for _ in range(200):
                codes = await asyncio.gather(*(sp.poll() for sp in spawners))
                code = codes[n % 5]
                if code is not None:
                    break
                await asyncio.sleep(0.05)
            rounds = batched_rounds(log) - before
            assert code is not None and rounds <= 2, f"{fault}/{target}: qdel noticed after {rounds} rounds"
            assert [c for i, c in enumerate(codes) if i != n % 5] == [None] * 4
            assert victim_job in victim.leftovers.cancelled and victim.job_id == ""  # cancelled, then forgotten
            assert fake_state(victim_job) == "cancelled"
            victim.clear_state()
            state = victim.get_state()  # only the ended job's facts for the page (issue 14) may stay
            assert set(state) <= {"last_ended"}, state  # no job id or uncancelled job left to track
            report.append(f"{fault}/{target}: kept 5/5, qdel noticed after {rounds} round(s)")
            spawners[n % 5] = await submit(n % 5)
    finally:
        for sp in spawners:
            if sp.job_id:
                sp.cancel_wait_timeout = 3
                await sp.stop()
        await StatusPoller.stop_all()
    print("\n".join(report))
    states = {j["state"] for j in fakesched.jobs(cluster_dir).values()}
    assert states <= {"cancelled", "finished", "completed"}, states  # nothing orphaned
    assert json.dumps(report)
