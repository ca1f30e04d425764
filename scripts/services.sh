#!/usr/bin/env bash
# Makes sure the services the tests use are up on 127.0.0.1: Redis (6379)
# and PostgreSQL (5432, database "test"). Starts them if they are installed
# but stopped. Never fails: tests decide (they skip without a service, or
# fail when TOLLGATE_TEST_REQUIRE_SERVICES=1).
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "services: starting redis-server on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  else
    echo "services: redis-server is not installed; Redis tests will skip (or fail in CI)"
  fi
fi

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  else
    echo "services: PostgreSQL is not installed; PostgreSQL tests will skip (or fail in CI)"
  fi
fi

for i in $(seq 1 30); do
  port_open 6379 && port_open 5432 && break
  sleep 1
done

# The tests use database "test"; create it if the server lacks it.
if port_open 5432 && command -v psql >/dev/null 2>&1; then
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c "create database test" >/dev/null 2>&1 || true
  fi
fi
exit 0
