#!/usr/bin/env bash
# Checks a built `tenancy` image without a container runtime (podman run
# cannot set rlimits on these machines): its configuration (labels, user,
# entrypoint, no HEALTHCHECK), its filesystem (no shell, the binary owned by
# root), then runs the binary from that filesystem: the image is mounted
# (buildah from + mount), bound read-only in a private mount namespace with
# /proc, /dev and a tmpfs /tmp (as Kubernetes runs it: readOnlyRootFilesystem),
# and `tenancy --version` and a smoke `tenancy serve` run chrooted there as
# the image's user. The smoke serve must report SERVING on the gateway's port
# and on its plaintext health port, and list every public service.
#
# usage: deploy/image/check.sh IMAGE [REVISION]
#   REVISION, when given, must be the image's revision label.
# Needs root (mount, chroot), buildah, jq, grpcurl.
set -euo pipefail

image=$1
revision=${2:-}
fail() {
  echo "check.sh: $image: $*" >&2
  exit 1
}
for tool in buildah jq grpcurl unshare chroot; do
  command -v "$tool" >/dev/null || fail "needs $tool"
done

# 1. Configuration.
inspected=$(buildah inspect --type image "$image")
config=$(jq '.OCIv1.config' <<<"$inspected")
docker_config=$(jq '.Docker.config' <<<"$inspected")
label() { jq -r --arg key "org.opencontainers.image.$1" '.Labels[$key] // ""' <<<"$config"; }
user=$(jq -r '.User // ""' <<<"$config")
[ "$user" = "65532:65532" ] || fail "user is '$user', want 65532:65532 (nonroot)"
entrypoint=$(jq -c '.Entrypoint' <<<"$config")
[ "$entrypoint" = '["/usr/local/bin/tenancy"]' ] || fail "entrypoint is $entrypoint"
[ "$(jq -c '.Healthcheck // null' <<<"$docker_config")" = null ] ||
  fail "has a HEALTHCHECK (Kubernetes probes check health)"
for key in title description version revision created licenses base.name; do
  [ -n "$(label "$key")" ] || fail "no label org.opencontainers.image.$key"
done
[ "$(label licenses)" = Apache-2.0 ] || fail "licenses label is $(label licenses)"
if [ -n "$revision" ] && [ "$(label revision)" != "$revision" ]; then
  fail "revision label is $(label revision), want $revision"
fi

# 2. Filesystem.
container=$(buildah from --quiet "$image")
work=$(mktemp -d)
cleanup() {
  buildah umount "$container" >/dev/null 2>&1 || true
  buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$(buildah mount "$container")
for shell in bin/sh bin/bash bin/dash bin/busybox usr/bin/sh usr/bin/bash; do
  [ ! -e "$rootfs/$shell" ] || fail "has a shell: /$shell"
done
binary=$rootfs/usr/local/bin/tenancy
[ -x "$binary" ] || fail "no executable /usr/local/bin/tenancy"
[ "$(stat -c %u "$binary")" = 0 ] && [ "$(stat -c %a "$binary")" = 755 ] ||
  fail "/usr/local/bin/tenancy is $(stat -c '%u %a' "$binary"), want root-owned 755 (not writable by the user)"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle /etc/ssl/certs/ca-certificates.crt"

# 3. Run it from its filesystem, as its user, on a read-only root.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ROOTFS=$rootfs RUN_AS=$user LOG=$work/serve.log VERSION_WANT=$(label version)
PORT=$(free_port) HEALTH_PORT=$(free_port)
export ROOTFS RUN_AS LOG VERSION_WANT PORT HEALTH_PORT
unshare --mount --propagation private -- bash -euo pipefail -c '
  root=$(mktemp -d)
  mount --bind "$ROOTFS" "$root"
  mount -o remount,bind,ro "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  chroot=$(command -v chroot)
  version=$(env -i "$chroot" --userspec="$RUN_AS" "$root" /usr/local/bin/tenancy --version)
  echo "from the image: $version"
  [ "$version" = "tenancy $VERSION_WANT" ] || { echo "version label $VERSION_WANT, binary says $version"; exit 1; }
  if touch "$root/usr/local/bin/probe" 2>/dev/null; then echo "root filesystem is writable"; exit 1; fi

  env -i TENANCY_DATA_DIR=/tmp/data TENANCY_LOG_FORMAT=json \
    TENANCY_GATEWAY__LISTEN=127.0.0.1:$PORT TENANCY_GATEWAY__HEALTH_LISTEN=127.0.0.1:$HEALTH_PORT \
    TENANCY_IDENTITY__LISTEN=127.0.0.1:0 TENANCY_ACCOUNT__LISTEN=127.0.0.1:0 \
    TENANCY_CONTACTS__LISTEN=127.0.0.1:0 TENANCY_SUPPORT__LISTEN=127.0.0.1:0 \
    "$chroot" --userspec="$RUN_AS" "$root" /usr/local/bin/tenancy serve >"$LOG" 2>&1 &
  pid=$!
  trap "kill \$pid 2>/dev/null || true; wait \$pid 2>/dev/null || true" EXIT
  serving() { grpcurl -plaintext -max-time 2 "127.0.0.1:$1" grpc.health.v1.Health/Check 2>/dev/null | grep -q "\"SERVING\""; }
  for _ in $(seq 1 120); do
    serving "$PORT" && break
    kill -0 $pid 2>/dev/null || { cat "$LOG"; echo "tenancy serve exited"; exit 1; }
    sleep 0.5
  done
  serving "$PORT" || { cat "$LOG"; echo "gateway not SERVING on $PORT"; exit 1; }
  # The health port serves health alone, without reflection (as kubelet
  # calls it): describe the Health service from the gateway instead.
  grpcurl -plaintext -protoset-out "$LOG.protoset" "127.0.0.1:$PORT" describe grpc.health.v1.Health >/dev/null
  grpcurl -plaintext -protoset "$LOG.protoset" "127.0.0.1:$HEALTH_PORT" grpc.health.v1.Health/Check | grep -q "\"SERVING\"" ||
    { cat "$LOG"; echo "health port $HEALTH_PORT not SERVING"; exit 1; }
  services=$(grpcurl -plaintext "127.0.0.1:$PORT" list)
  for s in tenancy.identity.v1.IdentityService tenancy.account.v1.AccountService \
           tenancy.contacts.v1.ContactsService tenancy.support.v1.SupportService; do
    grep -qx "$s" <<<"$services" || { echo "gateway does not list $s"; exit 1; }
  done
  # It ran as the image user: the files it made in its data directory are
  # that user'"'"'s.
  owner=$(stat -c %u:%g "$root/tmp/data/principal.key")
  [ "$owner" = "$RUN_AS" ] || { echo "data written as $owner, not $RUN_AS"; exit 1; }
  echo "from the image: tenancy serve answered SERVING on the gateway and its health port, as $owner, read-only root"
'
echo "check.sh: $image: ok (user $user, entrypoint $entrypoint, version $(label version), revision $(label revision), $(buildah images --format '{{.Size}}' "$image"))"
