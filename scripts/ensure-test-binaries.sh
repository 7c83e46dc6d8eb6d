#!/usr/bin/env bash
# Make sure the real servers the tests start exist: redis-server and PostgreSQL (and the tools
# some tests drive: nginx, promtool, Chromium).
# The tests start throwaway instances themselves (on free loopback ports, in temp dirs) and stop
# them when the session ends, failed or not.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v git >/dev/null 2>&1 || need+=(git)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the browser tests drive Debian's Chromium (Playwright)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # Debian may start the packaged services; the tests never use them.
    for service in "${need[@]}"; do
        case $service in redis-server|postgresql|nginx|prometheus) ($sudo service "$service" stop || true) >/dev/null 2>&1 ;; esac
    done
fi
id postgres >/dev/null 2>&1 || { echo "the postgres user is missing"; exit 1; }
