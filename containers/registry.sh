#!/usr/bin/env bash
# A local image registry on 127.0.0.1 (Debian's docker-registry, distribution 2.8) as a plain
# process: for CI and for hosts without a remote registry. Plain HTTP: push and pull with
# --tls-verify=false or a registries.conf `insecure = true` entry (tests/test_containers_e2e.py).
#   containers/registry.sh start [PORT]   (default 5000; data in containers/.cache/registry)
#   containers/registry.sh stop
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/containers/.cache/registry"
port="${2:-${CZB_REGISTRY_PORT:-5000}}"
mkdir -p "$state/data"
case "${1:-}" in
  start)
    if [[ -f "$state/pid" ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "[registry] already running (pid $(cat "$state/pid"))"; exit 0
    fi
    cat > "$state/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONF
    nohup docker-registry serve "$state/config.yml" > "$state/registry.log" 2>&1 &
    echo $! > "$state/pid"
    for _ in $(seq 50); do
      if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null; then
        echo "[registry] 127.0.0.1:$port (pid $(cat "$state/pid"))"; exit 0
      fi
      sleep 0.2
    done
    cat "$state/registry.log" >&2; echo "[registry] did not start" >&2; exit 1 ;;
  stop)
    if [[ -f "$state/pid" ]]; then kill "$(cat "$state/pid")" 2>/dev/null || true; rm -f "$state/pid"; fi ;;
  *) echo "usage: $0 start|stop [PORT]" >&2; exit 2 ;;
esac
