#!/usr/bin/env bash
# Gateway benchmark of issues 6 and 16: an authorized unary call (GetMe)
# driven by an external load generator (h2load, Debian's nghttp2-client),
# TLS on the client leg and mutual TLS on the upstream leg, two ways:
#   1. through the gateway (every check: token, revocations, membership,
#      rate limits, principal signing; TLS 1.3 from h2load, mTLS to
#      identity with the gateway's certificate),
#   2. through nginx doing the same TLS (`listen ssl http2`, `grpc_pass
#      grpcs://` with grpc_ssl_certificate = the gateway's certificate,
#      grpc_ssl_verify against the internal CA, upstream keepalive), no auth,
#      to the same identity service.
# A third path straight to identity is no longer measured: h2load cannot
# present a client certificate, and identity serves mTLS only.
# Prints requests/s and p50/p99 latency of each, and the ratio the issue
# targets (gateway/nginx >= 1.0).
# A third path (issue 19): a second gateway process, the same binary with
# metrics on (`metrics_listen`: every call timed into grpc_server_* and
# grpc_client_*, scraped once a round as Prometheus would), against the
# first, which serves none and times no call. The ratio metrics/gateway is
# what metrics cost (target >= 0.95). METRICS=0 leaves it out.
#
# nginx forwards the principal `tenancy admin principal` signed, the same on
# every call: identity accepts its first use and refuses the others
# (PRINCIPAL_REPLAYED) before any handler, so behind nginx identity does
# less work per call than behind the gateway (which signs a fresh principal
# per call and gets a real GetMe answered). On two shared cores that leaves
# nginx more CPU: the comparison leans towards nginx.
#
# Needs: h2load, nginx, grpcurl, a built `tenancy` binary (TENANCY_BIN,
# default $CARGO_TARGET_DIR/debug/tenancy). Usage:
#   bash crates/gateway/benches/throughput.sh [requests] [connections] [streams]
# ROUNDS=n (default 3) repeats the runs; the ratio uses medians. PERF_OUT=file
# records a CPU profile of the gateway with metrics during the last round.
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
GW=127.0.0.1:50751 ID=127.0.0.1:50761 NGINX=127.0.0.1:50771 GW_METRICS=127.0.0.1:50752
METRICS_PORT=127.0.0.1:50753 WITH_METRICS=${METRICS:-1}
TLS=$DATA/tls
export TENANCY_DATA_DIR=$DATA TENANCY_LOG_FILTER=warn,tenancy_contacts::dev_mailer=info \
  TENANCY_IDENTITY__LISTEN=$ID TENANCY_ACCOUNT__LISTEN=127.0.0.1:50762 \
  TENANCY_CONTACTS__LISTEN=127.0.0.1:50763 TENANCY_SUPPORT__LISTEN=127.0.0.1:50764 \
  TENANCY_GATEWAY__PRINCIPAL_RATE_PER_SECOND=10000000 TENANCY_GATEWAY__PRINCIPAL_BURST=10000000
TENANCY_GATEWAY__LISTEN=127.0.0.1:0 "$BIN" serve >"$DATA/serve.log" 2>&1 &
SERVE=$!
GATEWAY_PID= NGINX_PID= METRICS_GATEWAY_PID=
cleanup() { kill $SERVE $GATEWAY_PID $NGINX_PID $METRICS_GATEWAY_PID 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do [ -s "$DATA/principal.key" ] && grep -q 'gateway listening' "$DATA/serve.log" && break; sleep 0.1; done
# The gateway alone, as in production: the development CA and certificates
# `serve` made in data_dir/tls (mTLS upstream), the public certificate for
# 127.0.0.1 on its port.
TOKIO_WORKER_THREADS=${GATEWAY_THREADS:-2} TENANCY_PRINCIPAL_KEY=$(cat "$DATA/principal.key") \
  TENANCY_TLS__CA_FILE=$TLS/ca.pem TENANCY_TLS__CERT_FILE="$TLS/{part}.pem" TENANCY_TLS__KEY_FILE="$TLS/{part}.key" \
  TENANCY_GATEWAY__TLS_CERT_FILE=$TLS/public.pem TENANCY_GATEWAY__TLS_KEY_FILE=$TLS/public.key \
  TENANCY_GATEWAY__LISTEN=$GW "$BIN" serve gateway >"$DATA/gateway.log" 2>&1 &
GATEWAY_PID=$!
if [ "$WITH_METRICS" = 1 ]; then
  TOKIO_WORKER_THREADS=${GATEWAY_THREADS:-2} TENANCY_PRINCIPAL_KEY=$(cat "$DATA/principal.key") \
    TENANCY_TLS__CA_FILE=$TLS/ca.pem TENANCY_TLS__CERT_FILE="$TLS/{part}.pem" TENANCY_TLS__KEY_FILE="$TLS/{part}.key" \
    TENANCY_GATEWAY__TLS_CERT_FILE=$TLS/public.pem TENANCY_GATEWAY__TLS_KEY_FILE=$TLS/public.key \
    TENANCY_METRICS_LISTEN=$METRICS_PORT \
    TENANCY_GATEWAY__LISTEN=$GW_METRICS "$BIN" serve gateway >"$DATA/gateway-metrics.log" 2>&1 &
  METRICS_GATEWAY_PID=$!
fi
G="-cacert $TLS/ca.pem"
for address in $GW $([ "$WITH_METRICS" = 1 ] && echo $GW_METRICS); do
  for _ in $(seq 1 100); do
    grpcurl $G $address grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
    sleep 0.2
  done
done

EMAIL=bench-$RANDOM@example.com PASSWORD='correct horse battery staple'
grpcurl $G -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"name\":\"Bench\"}" $GW tenancy.identity.v1.IdentityService/SignUp >/dev/null
for _ in $(seq 1 50); do grep -q 'token=' "$DATA/serve.log" && break; sleep 0.1; done
VERIFY=$(grep -o 'token=[A-Za-z0-9_-]*' "$DATA/serve.log" | tail -1 | cut -d= -f2)
grpcurl $G -d "{\"token\":\"$VERIFY\"}" $GW tenancy.identity.v1.IdentityService/VerifyEmail >/dev/null
TOKEN=$(grpcurl $G -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" $GW tenancy.identity.v1.IdentityService/Login |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["session"]["accessToken"]["token"])')
USER_ID=$(grpcurl $G -H "authorization: Bearer $TOKEN" $GW tenancy.identity.v1.IdentityService/GetMe |
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
    listen $NGINX ssl http2;
    ssl_certificate $TLS/public.pem;
    ssl_certificate_key $TLS/public.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      grpc_pass grpcs://identity;
      # Mutual TLS to identity, as the gateway does it.
      grpc_ssl_certificate $TLS/gateway.pem;
      grpc_ssl_certificate_key $TLS/gateway.key;
      grpc_ssl_trusted_certificate $TLS/ca.pem;
      grpc_ssl_verify on;
      grpc_ssl_name identity.tenancy;
      grpc_ssl_server_name on;
      grpc_ssl_session_reuse on;
    }
  }
}
CONF
nginx -c "$DATA/nginx.conf" -p "$DATA" &
NGINX_PID=$!
sleep 0.5
NGINX_WORKER=$(pgrep -P "$(cat "$DATA/nginx.pid")" | head -1)

printf '\0\0\0\0\0' >"$DATA/empty.grpc" # one gRPC frame: an empty GetMeRequest
principal_headers() { "$BIN" admin principal --method /tenancy.identity.v1.IdentityService/GetMe --user-id "$USER_ID" | sed 's/^/-H\n/'; }

# CPU time (ms, user + system) a process has used so far.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

# run NAME ADDRESS HEADER...: h2load, then requests/s, latency percentiles
# and the CPU each process spent per call (the machine has few cores: a
# proxy's CPU is taken from the service behind it).
run() {
  local name=$1 address=$2; shift 2
  local log="$DATA/$name.h2load.log"
  local gw0 id0 nx0 gateway=${RUN_GATEWAY_PID:-$GATEWAY_PID}
  gw0=$(cpu_ms $gateway) id0=$(cpu_ms $SERVE) nx0=$(cpu_ms "$NGINX_WORKER")
  h2load -n "$N" -c "$C" -m "$M" -t 1 -d "$DATA/empty.grpc" \
    -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
    --log-file="$log" "https://$address/tenancy.identity.v1.IdentityService/GetMe" >"$DATA/$name.out"
  local rps ok
  rps=$(grep -o 'finished in [^,]*, [0-9.]* req/s' "$DATA/$name.out" | grep -o '[0-9.]* req/s' | cut -d' ' -f1)
  ok=$(grep -o '[0-9]* succeeded' "$DATA/$name.out" | cut -d' ' -f1)
  local gw id nx
  gw=$(($(cpu_ms $gateway) - gw0)) id=$(($(cpu_ms $SERVE) - id0))
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
grpcurl $G -H "authorization: Bearer $TOKEN" $GW tenancy.identity.v1.IdentityService/GetMe | grep -q "$EMAIL"
mapfile -t DIRECT_HEADERS < <(principal_headers)
grpcurl $G "${DIRECT_HEADERS[@]}" $NGINX tenancy.identity.v1.IdentityService/GetMe | grep -q "$EMAIL"

ROUNDS=${ROUNDS:-3}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $N GetMe calls, $C connections x $M streams, $ROUNDS rounds"
# Rounds interleave the three paths, so a slow spell of the VM (they come
# and go over seconds) lands on all of them; ratios use each path's median.
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run gateway $GW -H "authorization: Bearer $TOKEN"
  if [ "$WITH_METRICS" = 1 ]; then
    # PERF_OUT=file: a CPU profile (perf record -g) of the gateway with
    # metrics during its last round, to see what tracing and metrics cost.
    PERF=
    if [ -n "${PERF_OUT:-}" ] && [ "$round" = "$ROUNDS" ]; then
      perf record -q -F 999 -g -p "$METRICS_GATEWAY_PID" -o "$PERF_OUT" 2>/dev/null &
      PERF=$!
    fi
    RUN_GATEWAY_PID=$METRICS_GATEWAY_PID run metrics $GW_METRICS -H "authorization: Bearer $TOKEN"
    if [ -n "$PERF" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
    # What Prometheus would scrape; proves every call was counted.
    python3 - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode()
ok = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
         if l.startswith("grpc_server_handled_total{") and 'grpc_method="GetMe"' in l and 'grpc_code="OK"' in l)
print(f"         scraped {len(text)} bytes: grpc_server_handled_total GetMe OK = {ok:.0f}")
PY
  fi
  mapfile -t DIRECT_HEADERS < <(principal_headers)
  run nginx $NGINX "${DIRECT_HEADERS[@]}"
done
python3 - "$DATA" <<'PY'
import sys, pathlib, statistics
d = pathlib.Path(sys.argv[1])
r = {n: statistics.median(float(x) for x in (d / f"{n}.rps").read_text().split())
     for n in ("gateway", "metrics", "nginx") if (d / f"{n}.rps").exists()}
print("median req/s: " + ", ".join(f"{n} {v:.0f}" for n, v in r.items()))
print(f"gateway/nginx  = {r['gateway'] / r['nginx']:.2f} (target >= 1.0)")
if "metrics" in r:
    print(f"metrics/nginx  = {r['metrics'] / r['nginx']:.2f}")
    print(f"metrics/gateway = {r['metrics'] / r['gateway']:.3f} (metrics on vs off; target >= 0.95)")
PY
