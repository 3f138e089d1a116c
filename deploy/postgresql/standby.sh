#!/bin/sh
# Make db2 a streaming standby of db1 (run on db2, as postgres, with db2's server stopped and
# its data directory empty). -R writes primary_conninfo and standby.signal.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/16/main}
pg_basebackup -h db1.example.nhs.uk -U replicator -D "$PGDATA" -R -X stream -c fast
# Then start the server: it follows db1. To fail over (db1 lost): `pg_ctl promote -D "$PGDATA"`
# (or `SELECT pg_promote()`); the gateways move to it by themselves.
