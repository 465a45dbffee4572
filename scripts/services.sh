#!/usr/bin/env bash
# Starts the services the tests talk to, installing what is missing:
# PostgreSQL (127.0.0.1:5432) and PostgREST behind an nginx gateway (the local
# Supabase, via scripts/supabase-local.sh), and Redis (127.0.0.1:6379).
# Idempotent: running it twice is fine.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-server >/dev/null; then
    echo "services: installing redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! redis_up; then
    echo "services: starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
fi
redis_up || { echo "services: Redis did not start (see /var/log/redis/ci.log)" >&2; exit 1; }
echo "services: Redis ready on 127.0.0.1:6379"

# PostgreSQL + PostgREST + gateway.
scripts/supabase-local.sh
