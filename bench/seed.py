"""Seed a stopped hub's database with N running servers on the FAKE scheduler (benchmark only).

``python -m bench.seed DB_URL N PORT USERS START_ID TABLE PREFIX`` (run with the hub's own venv):
adds N named servers, spread over USERS (comma list), each with a Spawner state holding a job id
(START_ID, START_ID+1, ...) that TABLE (the fake squeue's job table) lists as RUNNING on
localhost, and a Server at 127.0.0.1:PORT (the benchmark's one shared HTTP server). The hub then
restores them at startup exactly as after a restart: one poll per server, one HTTP check, and
from then on its normal poll rounds. This fills 10,000 servers in seconds, where spawning them
through the API would take about an hour on 2 cores; the per-round measurement that follows is
the same either way.
"""

from __future__ import annotations

import sys

from jupyterhub import orm


def seed(db_url, n, port, users, start_id, table, prefix):
    db = orm.new_session_factory(db_url)()
    owners = {name: db.query(orm.User).filter_by(name=name).one() for name in users}
    rows = []
    for i in range(n):
        user = owners[users[i % len(users)]]
        name = f"{prefix}{i:05d}"
        job_id = str(start_id + i)
        server = orm.Server(ip="127.0.0.1", port=port, base_url=f"/user/{user.name}/{name}/")
        db.add(server)
        spawner = orm.Spawner(user=user, name=name, server=server,
                              state={"job_id": job_id, "job_status": "RUNNING localhost"})
        db.add(spawner)
        rows.append(f"{job_id} RUNNING localhost\n")
        if i % 1000 == 999:
            db.commit()
    db.commit()
    with open(table, "a") as f:
        f.writelines(rows)


if __name__ == "__main__":
    db_url, n, port, users, start_id, table, prefix = sys.argv[1:8]
    seed(db_url, int(n), int(port), users.split(","), int(start_id), table, prefix)
