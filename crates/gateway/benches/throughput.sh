#!/usr/bin/env bash
# Gateway benchmark (b) of issue 6: an authorized unary call (GetMe) driven by
# an external load generator (h2load, Debian's nghttp2-client) three ways:
#   1. through the gateway (every check: token, revocations, membership,
#      rate limits, principal signing),
#   2. through nginx (`grpc_pass`, no auth) to the same identity service,
#   3. straight to the identity service.
# Prints requests/s and p50/p99 latency of each, and the ratios the issue
# targets (gateway/nginx >= 1.0, gateway/direct >= 0.6).
#
# Needs: h2load, nginx, grpcurl, a built `tenancy` binary (TENANCY_BIN,
# default $CARGO_TARGET_DIR/debug/tenancy). Usage:
#   bash crates/gateway/benches/throughput.sh [requests] [connections] [streams]
# ROUNDS=n (default 3) repeats the three runs; the ratios use medians.
# Build the binary with `cargo build --release -p tenancy` (production's
# profile) and point TENANCY_BIN at target/release/tenancy.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${TENANCY_BIN:-${CARGO_TARGET_DIR:-target}/debug/tenancy}
N=${1:-20000}
C=${2:-16}
M=${3:-4}
DATA=$(mktemp -d)
# The suite's services in one process; the gateway under test in a process
# of its own, like nginx (in production each part runs alone).
GW=127.0.0.1:50751 ID=127.0.0.1:50761 NGINX=127.0.0.1:50771
export TENANCY_DATA_DIR=$DATA TENANCY_LOG_FILTER=warn,tenancy_contacts::dev_mailer=info \
  TENANCY_IDENTITY__LISTEN=$ID TENANCY_ACCOUNT__LISTEN=127.0.0.1:50762 \
  TENANCY_CONTACTS__LISTEN=127.0.0.1:50763 TENANCY_SUPPORT__LISTEN=127.0.0.1:50764 \
  TENANCY_GATEWAY__PRINCIPAL_RATE_PER_SECOND=10000000 TENANCY_GATEWAY__PRINCIPAL_BURST=10000000
TENANCY_GATEWAY__LISTEN=127.0.0.1:0 "$BIN" serve >"$DATA/serve.log" 2>&1 &
SERVE=$!
GATEWAY_PID= NGINX_PID=
cleanup() { kill $SERVE $GATEWAY_PID $NGINX_PID 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do [ -s "$DATA/principal.key" ] && grep -q 'gateway listening' "$DATA/serve.log" && break; sleep 0.1; done
TOKIO_WORKER_THREADS=${GATEWAY_THREADS:-2} TENANCY_PRINCIPAL_KEY=$(cat "$DATA/principal.key") TENANCY_GATEWAY__LISTEN=$GW "$BIN" serve gateway >"$DATA/gateway.log" 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext $GW grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.2
done

EMAIL=bench-$RANDOM@example.com PASSWORD='correct horse battery staple'
grpcurl -plaintext -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" $GW tenancy.identity.v1.IdentityService/SignUp >/dev/null
for _ in $(seq 1 50); do grep -q 'token=' "$DATA/serve.log" && break; sleep 0.1; done
VERIFY=$(grep -o 'token=[A-Za-z0-9_-]*' "$DATA/serve.log" | tail -1 | cut -d= -f2)
grpcurl -plaintext -d "{\"token\":\"$VERIFY\"}" $GW tenancy.identity.v1.IdentityService/VerifyEmail >/dev/null
TOKEN=$(grpcurl -plaintext -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" $GW tenancy.identity.v1.IdentityService/Login |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["session"]["accessToken"]["token"])')
USER_ID=$(grpcurl -plaintext -H "authorization: Bearer $TOKEN" $GW tenancy.identity.v1.IdentityService/GetMe |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')

cat >"$DATA/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $DATA/nginx.pid;
error_log $DATA/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # nginx closes a client connection after 1,000 requests by default; the
  # other two paths don't, so neither may it (else h2load counts failures).
  keepalive_requests 10000000;
  upstream identity { server $ID; keepalive 64; keepalive_requests 10000000; }
  server {
    listen $NGINX http2;
    location / { grpc_pass grpc://identity; }
  }
}
CONF
nginx -c "$DATA/nginx.conf" -p "$DATA" &
NGINX_PID=$!
sleep 0.5
NGINX_WORKER=$(pgrep -P "$(cat "$DATA/nginx.pid")" | head -1)

printf '\0\0\0\0\0' >"$DATA/empty.grpc" # one gRPC frame: an empty GetMeRequest
principal_headers() { "$BIN" admin principal --user-id "$USER_ID" | sed 's/^/-H\n/'; }

# CPU time (ms, user + system) a process has used so far.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

# run NAME ADDRESS HEADER...: h2load, then requests/s, latency percentiles
# and the CPU each process spent per call (the machine has few cores: a
# proxy's CPU is taken from the service behind it).
run() {
  local name=$1 address=$2; shift 2
  local log="$DATA/$name.h2load.log"
  local gw0 id0 nx0
  gw0=$(cpu_ms $GATEWAY_PID) id0=$(cpu_ms $SERVE) nx0=$(cpu_ms "$NGINX_WORKER")
  h2load -n "$N" -c "$C" -m "$M" -t 1 -d "$DATA/empty.grpc" \
    -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
    --log-file="$log" "http://$address/tenancy.identity.v1.IdentityService/GetMe" >"$DATA/$name.out"
  local rps ok
  rps=$(grep -o 'finished in [^,]*, [0-9.]* req/s' "$DATA/$name.out" | grep -o '[0-9.]* req/s' | cut -d' ' -f1)
  ok=$(grep -o '[0-9]* succeeded' "$DATA/$name.out" | cut -d' ' -f1)
  local gw id nx
  gw=$(($(cpu_ms $GATEWAY_PID) - gw0)) id=$(($(cpu_ms $SERVE) - id0))
  nx=$(($(cpu_ms "$NGINX_WORKER") - nx0))
  python3 - "$log" "$name" "$rps" "$ok" "$N" "$gw" "$id" "$nx" <<'PY'
import sys
log, name, rps, ok, n, gw, ident, nx = sys.argv[1:]
lat = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] / 1000
per = lambda ms: int(ms) * 1000 / int(n)
print(f"{name:8} {float(rps):9.0f} req/s  p50 {pct(0.50):6.2f} ms  p99 {pct(0.99):6.2f} ms  ({ok}/{n} succeeded)"
      f"  CPU per call: gateway {per(gw):5.1f} us, nginx {per(nx):5.1f} us, service {per(ident):5.1f} us")
PY
  echo "$rps" >>"$DATA/$name.rps"
}

# A GetMe that really succeeds through each path (HTTP 200 alone proves
# nothing for gRPC).
grpcurl -plaintext -H "authorization: Bearer $TOKEN" $GW tenancy.identity.v1.IdentityService/GetMe | grep -q "$EMAIL"
mapfile -t DIRECT_HEADERS < <(principal_headers)
grpcurl -plaintext "${DIRECT_HEADERS[@]}" $NGINX tenancy.identity.v1.IdentityService/GetMe | grep -q "$EMAIL"

ROUNDS=${ROUNDS:-3}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $N GetMe calls, $C connections x $M streams, $ROUNDS rounds"
# Rounds interleave the three paths, so a slow spell of the VM (they come
# and go over seconds) lands on all of them; ratios use each path's median.
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run gateway $GW -H "authorization: Bearer $TOKEN"
  mapfile -t DIRECT_HEADERS < <(principal_headers)
  run nginx $NGINX "${DIRECT_HEADERS[@]}"
  mapfile -t DIRECT_HEADERS < <(principal_headers)
  run direct $ID "${DIRECT_HEADERS[@]}"
done
python3 - "$DATA" <<'PY'
import sys, pathlib, statistics
d = pathlib.Path(sys.argv[1])
r = {n: statistics.median(float(x) for x in (d / f"{n}.rps").read_text().split())
     for n in ("gateway", "nginx", "direct")}
print("median req/s: " + ", ".join(f"{n} {v:.0f}" for n, v in r.items()))
print(f"gateway/nginx  = {r['gateway'] / r['nginx']:.2f} (target >= 1.0)")
print(f"gateway/direct = {r['gateway'] / r['direct']:.2f} (target >= 0.6)")
PY
