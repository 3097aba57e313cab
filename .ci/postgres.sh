#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the storage tests (tests/test_search_workers.py).
#   postgres.sh start DIR   install the Debian package if missing, create a cluster in DIR, start it on
#                           127.0.0.1 and print its URL (for GHN_NAS_POSTGRES_URL); exit 1 if impossible
#   postgres.sh stop DIR    stop that server and remove DIR
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a directory for the cluster}

bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() {  # the server refuses to run as root: use the package's postgres user then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $cmd in
start)
    if [ -z "$(bin)" ]; then
        command -v apt-get >/dev/null || { echo "no PostgreSQL and no apt-get to install it" >&2; exit 1; }
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    pg=$(bin)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$pg/initdb" -D "$dir/data" -U postgres -A trust >&2
    as_owner "$pg/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >&2
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    pg=$(bin)
    [ -d "$dir/data" ] && as_owner "$pg/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
