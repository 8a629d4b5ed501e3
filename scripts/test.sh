#!/usr/bin/env bash
# Runs every test of the workspace against a real PostgreSQL.
#
# Which server: DATABASE_URL if set; else one answering on 127.0.0.1:5432; else a
# throwaway cluster started here from the installed server binaries (as a non-root
# user, data and socket under target/, a free port) and stopped on exit.
# FLOW_TEST_PG=throwaway forces the throwaway cluster (CI takes the path a fresh
# machine takes); FLOW_TEST_PG=local forces localhost.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${FLOW_TEST_PG:-auto}"
pg_bin="$(pg_config --bindir 2>/dev/null || true)"
for candidate in "$pg_bin" /usr/lib/postgresql/*/bin; do
  if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then pg_bin="$candidate"; break; fi
done

local_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

start_throwaway() {
  [ -x "$pg_bin/initdb" ] || { echo "no PostgreSQL server binaries found (pg_config --bindir)" >&2; exit 1; }
  local root="$PWD/target/pg-throwaway"
  rm -rf "$root" && mkdir -p "$root/data" "$root/socket"
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)"
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    local user=postgres
    id -u postgres >/dev/null 2>&1 || user=nobody
    # Only our own directory changes owner; shared folders stay as they are.
    chown -R "$user" "$root"
    # The user must be able to reach the directory; give it a path if the parents are private.
    if ! runuser -u "$user" -- test -x "$root"; then
      root="$(mktemp -d /tmp/flow-pg-XXXXXX)"
      mkdir -p "$root/data" "$root/socket" && chown -R "$user" "$root"
    fi
    run_as=(runuser -u "$user" --)
  fi
  "${run_as[@]}" "$pg_bin/initdb" -D "$root/data" -U postgres -A trust --no-sync >"$root/initdb.log" 2>&1 \
    || { cat "$root/initdb.log" >&2; exit 1; }
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w \
    -o "-p $port -k $root/socket -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=on" start >/dev/null \
    || { cat "$root/server.log" >&2; exit 1; }
  trap '"${run_as[@]}" "$pg_bin/pg_ctl" -D "'"$root"'/data" -m immediate stop >/dev/null 2>&1 || true' EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "test.sh: throwaway PostgreSQL on port $port (data in $root)"
}

case "$mode" in
  throwaway) start_throwaway ;;
  local) export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres" ;;
  auto)
    if [ -n "${DATABASE_URL:-}" ]; then :
    elif local_answers; then export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    else start_throwaway
    fi ;;
  *) echo "FLOW_TEST_PG must be auto, local or throwaway" >&2; exit 2 ;;
esac
echo "test.sh: using ${DATABASE_URL//:*@/:***@}"

# Databases left by earlier runs (each test creates its own).
if command -v psql >/dev/null 2>&1; then
  psql "$DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'flow_test_%'" 2>/dev/null \
    | while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo build --workspace --examples
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo build --workspace --examples
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
# The behaviour tests again, on the embedded SQLite backend (the PostgreSQL-only
# ones, such as worker processes and the caller's transaction, ask for PostgreSQL).
# --workspace, as above: with `-p flow` cargo unifies features anew and builds every
# dependency and test binary a second time.
sqlite_tests=(--test steps --test replay --test blocked --test time --test leases --test tracing_spans --test wakeups --test events --test processes --test faults --test writes --test cancel --test cancel_on --test timeouts --test waits --test send --test system_events --test invoke --test signals --test first_of --test pause --test concurrency --test idempotency --test catalog --test priority --test singleton --test if_filter --test throttle --test run_concurrency --test rate_limit --test fairness --test delayed_events --test cron --test grouping --test several_triggers)
if cargo nextest --version >/dev/null 2>&1; then
  FLOW_TEST_BACKEND=sqlite cargo nextest run --workspace "${sqlite_tests[@]}" --no-fail-fast
else
  FLOW_TEST_BACKEND=sqlite cargo test --workspace "${sqlite_tests[@]}" --no-fail-fast
fi
# nextest does not run doctests.
cargo test --workspace --doc
