#!/bin/bash
# A PostgreSQL server for the hub's database in the e2e tests (Debian 12's PostgreSQL, as large
# sites run JupyterHub on it; SQLite stays the default).
#
#   bash scripts/cluster/postgres.sh start    idempotent; prints the database URL
#   bash scripts/cluster/postgres.sh stop     stops the server this script started (its PID file)
#
# Its own data directory under $JHPC_CLUSTER_CACHE/run/postgres, no TCP listener at all: a Unix
# socket in a directory only root and postgres can enter, peer authentication (the OS user root
# is the database role root), so there is no password anywhere. Each start makes a fresh empty
# database "jupyterhub" for the tests.
set -euo pipefail
CACHE=${JHPC_CLUSTER_CACHE:-/var/cache/jupyterhub-hpc/clusters}
DIR=$CACHE/run/postgres
PORT=5439
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
cmd=${1:?usage: postgres.sh start|stop}

if [ -z "$bin" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { runuser -u postgres -- "$@"; }

running() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

case $cmd in
  start)
    mkdir -p "$DIR"
    install -d -o postgres -g postgres -m 0700 "$DIR/data"
    install -d -o postgres -g root -m 0750 "$DIR/sock" "$DIR/log"
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$DIR/data" --auth-local=peer --auth-host=reject -U postgres >"$DIR/initdb.log" 2>&1
    fi
    if ! running; then
      rm -f "$DIR/data/postmaster.pid"
      as_pg "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/log/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $DIR/sock -p $PORT" start >/dev/null
    fi
    psql() { as_pg "$bin/psql" -h "$DIR/sock" -p "$PORT" -U postgres -qAt "$@"; }
    [ "$(psql -c "select 1 from pg_roles where rolname='root'")" = 1 ] || psql -c "create role root login"
    psql -c "drop database if exists jupyterhub with (force)"
    psql -c "create database jupyterhub owner root"
    echo "postgresql+psycopg2://root@/jupyterhub?host=$DIR/sock&port=$PORT"
    ;;
  stop)
    if running; then as_pg "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; fi
    echo "postgres.sh: stopped"
    ;;
  *) echo "postgres.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
