#!/usr/bin/env bash
# Login throughput through the real Login RPC (issue 20 §4), driven by an
# external load generator: h2load (Debian's nghttp2-client) speaks gRPC over
# h2c to the gateway of a `tenancy serve` (the whole suite in one process,
# as `crates/gateway/benches/throughput.sh` starts it), which forwards each
# Login over mutual TLS to identity; identity hashes the password with
# argon2id at the configured parameters (the defaults: 19456 KiB, t=2, p=1).
#
# h2load sends one request body to every stream and does not read gRPC
# trailers, so:
#   - each of USERS users gets its own h2load process (1 connection,
#     STREAMS streams), so the per-email throttle (a few attempts in flight
#     per email and client address) is never what limits;
#   - only logins whose grpc-status is OK are counted, from the server's own
#     metrics port before and after: identity's
#     `grpc_server_handled_total{grpc_method="Login",grpc_code="OK"}` and
#     `tenancy_identity_logins_total{outcome="success"}` (they must agree).
#
# The hashing pool's admission control (auth.password_hash_max_wait) is
# widened to 60 s here: a shed login answers at once and h2load, which
# cannot honour a RetryInfo delay, would send it again at once, a busy loop
# that measures the refusals; the overload row of the login benchmark
# measures admission control. The gateway's per-address limit on PUBLIC
# calls is lifted likewise (every user logs in from 127.0.0.1).
#
# Prints one line `login: <ok>/s ok over <s> s, ...` and, given the argon2id
# time per hash in ms (HASH_MS, measured in the same run by bench/run with
# the same crate and parameters), the bound cores / hash time and the share
# of it reached.
#
# Needs: h2load, grpcurl, python3, a built `tenancy` (TENANCY_BIN).
# Usage: bash bench/login.sh [seconds] [users] [streams]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TENANCY_BIN:-${CARGO_TARGET_DIR:-target}/release/tenancy}
SECS=${1:-10}
USERS=${2:-16}
STREAMS=${3:-1}
DATA=$(mktemp -d)
GW=127.0.0.1:50951 METRICS=127.0.0.1:50952
export TENANCY_DATA_DIR=$DATA TENANCY_LOG_FILTER=warn,tenancy_contacts::dev_mailer=info \
  TENANCY_GATEWAY__LISTEN=$GW TENANCY_METRICS_LISTEN=$METRICS \
  TENANCY_IDENTITY__LISTEN=127.0.0.1:50961 TENANCY_ACCOUNT__LISTEN=127.0.0.1:50962 \
  TENANCY_CONTACTS__LISTEN=127.0.0.1:50963 TENANCY_SUPPORT__LISTEN=127.0.0.1:50964 \
  TENANCY_GATEWAY__PUBLIC_RATE_PER_MINUTE=100000000 TENANCY_GATEWAY__PUBLIC_BURST=100000000 \
  TENANCY_AUTH__PASSWORD_HASH_MAX_WAIT=${PASSWORD_HASH_MAX_WAIT:-60s}
"$BIN" serve >"$DATA/serve.log" 2>&1 &
SERVE=$!
LOADERS=()
cleanup() { kill $SERVE "${LOADERS[@]}" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q 'gateway listening' "$DATA/serve.log" && break; sleep 0.1; done
for _ in $(seq 1 100); do
  grpcurl -plaintext $GW grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.2
done

# USERS users, signed up and verified as a portal would (through the
# gateway), each with its own LoginRequest in a gRPC frame.
PASSWORD='correct horse battery staple'
for i in $(seq 1 "$USERS"); do
  email="login-bench-$i-$RANDOM@example.com"
  before=$(grep -c 'token=' "$DATA/serve.log" || true)
  grpcurl -plaintext -d "{\"email\":\"$email\",\"password\":\"$PASSWORD\",\"name\":\"Bench $i\"}" \
    $GW tenancy.identity.v1.IdentityService/SignUp >/dev/null
  for _ in $(seq 1 100); do [ "$(grep -c 'token=' "$DATA/serve.log" || true)" -gt "$before" ] && break; sleep 0.05; done
  token=$(grep -o 'token=[A-Za-z0-9_-]*' "$DATA/serve.log" | tail -1 | cut -d= -f2)
  grpcurl -plaintext -d "{\"token\":\"$token\"}" $GW tenancy.identity.v1.IdentityService/VerifyEmail >/dev/null
  # One login over grpcurl first: the very request h2load repeats succeeds.
  grpcurl -plaintext -d "{\"email\":\"$email\",\"password\":\"$PASSWORD\"}" \
    $GW tenancy.identity.v1.IdentityService/Login | grep -q accessToken
  # LoginRequest {email = 1, password = 2} in one uncompressed gRPC frame.
  python3 - "$email" "$PASSWORD" "$DATA/login-$i.grpc" <<'PY'
import struct, sys
email, password, path = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
field = lambda n, b: bytes([n << 3 | 2, len(b)]) + b
message = field(1, email.encode()) + field(2, password)
open(path, "wb").write(b"\0" + struct.pack(">I", len(message)) + message)
PY
done

# The OK logins so far: identity's handled-OK count and its logins by
# outcome, from the metrics port.
ok_logins() {
  python3 - "$METRICS" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode()
def total(pred):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if pred(l))
handled = total(lambda l: l.startswith("grpc_server_handled_total{") and 'grpc_method="Login"' in l
                and 'grpc_code="OK"' in l and 'part="identity"' in l)
success = total(lambda l: l.startswith('tenancy_identity_logins_total{outcome="success"}'))
# Refused (shed by the hashing pool's admission control, throttled, or
# anything else that is not OK: h2load cannot honour a RetryInfo delay: a refused call is
# sent again at once, so any refusal makes the run meaningless).
shed = total(lambda l: l.startswith("grpc_server_handled_total{") and 'grpc_method="Login"' in l
             and 'grpc_code="OK"' not in l and 'grpc_code="Canceled"' not in l
             and 'part="identity"' in l)
# Time the hashes took in the server, once they had a slot (the pool's own
# histogram): what a hash costs there, beside the other work of the cores.
hash_sum = total(lambda l: l.startswith("tenancy_identity_password_hash_seconds_sum"))
hash_count = total(lambda l: l.startswith("tenancy_identity_password_hash_seconds_count"))
print(f"{handled:.0f} {success:.0f} {shed:.0f} {hash_sum:.6f} {hash_count:.0f}")
PY
}
read -r ok0 success0 shed0 hsum0 hcount0 < <(ok_logins)
cpu0=$(awk '{ print $14 + $15 }' /proc/$SERVE/stat)
start=$(date +%s.%N)
for i in $(seq 1 "$USERS"); do
  h2load -D "$SECS" -c 1 -m "$STREAMS" -t 1 -d "$DATA/login-$i.grpc" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://$GW/tenancy.identity.v1.IdentityService/Login" >"$DATA/h2load-$i.out" 2>&1 &
  LOADERS+=($!)
done
wait "${LOADERS[@]}"
LOADERS=()
elapsed=$(python3 -c "import time; print(time.time() - $start)")
read -r ok1 success1 shed1 hsum1 hcount1 < <(ok_logins)
cpu1=$(awk '{ print $14 + $15 }' /proc/$SERVE/stat)
sent=$(cat "$DATA"/h2load-*.out | grep -o '[0-9]* succeeded' | awk '{ s += $1 } END { print s + 0 }')
python3 - "$((ok1 - ok0))" "$((success1 - success0))" "$((shed1 - shed0))" "$sent" "$elapsed" \
  "$USERS" "$STREAMS" "$(nproc)" "${HASH_MS:-}" "$(((cpu1 - cpu0) * 1000 / $(getconf CLK_TCK)))" \
  "$(python3 -c "print(($hsum1 - $hsum0) * 1000 / max($hcount1 - $hcount0, 1))")" <<'PY'
import sys
ok, success, shed, sent, elapsed, users, streams, cores, hash_ms, cpu_ms, server_hash_ms = sys.argv[1:]
ok, success, shed, sent, elapsed = int(ok), int(success), int(shed), int(sent), float(elapsed)
rate = ok / elapsed
line = (f"login: {rate:.1f}/s ok over {elapsed:.1f} s ({ok} logins with grpc-status OK, "
        f"{success} counted as success, {shed} refused; {sent} HTTP/2 responses; "
        f"{users} users x {streams} streams, h2load over h2c through the gateway; "
        f"server CPU {int(cpu_ms) / max(ok, 1):.1f} ms per login, of which a hash "
        f"{float(server_hash_ms):.1f} ms in the server's pool)")
if hash_ms:
    bound = int(cores) / (float(hash_ms) / 1000)
    line += f"; bound {cores} cores / {float(hash_ms):.1f} ms = {bound:.1f}/s; {100 * rate / bound:.0f} % of the bound"
print(line)
if shed:
    print(f"login: WARNING {shed} logins were refused (shed or throttled, see /metrics): fewer USERS or STREAMS")
if ok != success:
    print(f"login: WARNING handled OK ({ok}) and logins counted as success ({success}) differ")
PY
