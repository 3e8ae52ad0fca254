#!/usr/bin/env bash
# Builds the Containerfile's two base images offline, from Debian packages,
# into buildah's local storage, for machines that cannot pull from an image
# registry (the Containerfile's defaults are the public images these stand
# in for):
#
#   localhost/tenancy-base/runtime:bookworm
#       instead of gcr.io/distroless/cc-debian12:nonroot. A root filesystem
#       assembled from the .deb files of libc6, libgcc-s1, ca-certificates,
#       tzdata, netbase and base-files (unpacked, no maintainer scripts):
#       glibc, the CA bundle, time zones, /etc/services, and a non-root user
#       `nonroot` (65532). No shell, no package manager, nothing else to run.
#   localhost/tenancy-base/builder:bookworm
#       instead of docker.io/library/rust:<version>-slim-bookworm. Debian
#       bookworm (debootstrap, minbase) with gcc and libc6-dev for the C
#       parts of dependencies (ring, SQLite, mimalloc), and this machine's
#       Rust toolchain copied in (`rustc --print sysroot`, without its docs):
#       no toolchain download, which would need a network we do not have.
#       It also trusts this machine's local CAs (see below).
#
# Both are Debian 12 (bookworm), as the images they replace are, so a binary
# built on one runs on the other. Packages come from the machine's apt
# sources (`apt-get download`, debootstrap with DEBIAN_MIRROR, by default the
# mirror of /etc/apt/sources.list.d/debian.sources).
#
# usage: deploy/image/base.sh [runtime|builder|all]   (default: all)
set -euo pipefail

what=${1:-all}
case $what in runtime | builder | all) ;; *)
  echo "usage: $0 [runtime|builder|all]" >&2
  exit 2
  ;;
esac

RUNTIME_IMAGE=${RUNTIME_IMAGE:-localhost/tenancy-base/runtime:bookworm}
BUILDER_IMAGE=${BUILDER_IMAGE:-localhost/tenancy-base/builder:bookworm}
SUITE=bookworm
if [ -z "${DEBIAN_MIRROR:-}" ]; then
  DEBIAN_MIRROR=$(sed -n 's/^URIs: *\(.*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

for tool in buildah dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install buildah)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies the directory tree $1 into a new image $2 with the `buildah config`
# arguments that follow.
commit_tree() { # tree, image, config args...
  local tree=$1 image=$2
  shift 2
  local container mount previous
  previous=$(buildah images --quiet --no-trunc "$image" 2>/dev/null || true)
  container=$(buildah from scratch)
  mount=$(buildah mount "$container")
  cp -a "$tree/." "$mount/"
  buildah umount "$container" >/dev/null
  buildah config "$@" "$container"
  buildah commit --quiet --rm "$container" "$image" >/dev/null
  # The image this one replaces, unless something still uses it.
  if [ -n "$previous" ]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi
  echo "built $image ($(buildah images --format '{{.Size}}' "$image"))"
}

build_runtime() {
  local debs=$work/debs root=$work/runtime
  mkdir -p "$debs" "$root"
  # What the `tenancy` binary links (ldd: libc, libm, libgcc_s, the loader)
  # and what a service needs around it: CA certificates (SMTP over TLS),
  # time zones, /etc/services, /etc/os-release for image scanners.
  local packages=(libc6 libgcc-s1 gcc-12-base ca-certificates tzdata netbase base-files)
  if ! apt-cache show libc6 >/dev/null 2>&1; then apt-get update -qq; fi
  # apt-get download writes as _apt where it can; a private directory it
  # cannot enter makes it warn, so give it a world-writable one.
  chmod 0777 "$debs"
  (cd "$debs" && apt-get download -qq "${packages[@]}" 2>/dev/null)
  mkdir -p "$root/var/lib/dpkg/status.d"
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$root"
    # What is installed, where scanners (trivy, grype, syft) look for it in
    # distroless images: one control stanza per package.
    {
      dpkg-deb -f "$deb"
      echo "Status: install ok installed"
    } >"$root/var/lib/dpkg/status.d/$(dpkg-deb -f "$deb" Package)"
  done
  # What `update-ca-certificates` would make: every Mozilla root, one bundle.
  mkdir -p "$root/etc/ssl/certs"
  find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs awk 1 \
    >"$root/etc/ssl/certs/ca-certificates.crt"
  # Users: root (locked), nobody, and the one the image runs as.
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n' \
    >"$root/etc/nsswitch.conf"
  echo 'include /etc/ld.so.conf.d/*.conf' >"$root/etc/ld.so.conf"
  ldconfig -r "$root"
  # Only what runs or is read at run time; the licences stay.
  rm -rf "$root/usr/sbin" "$root/etc/ca-certificates" "$root/usr/share/man" \
    "$root/usr/share/info" "$root/usr/share/lintian" "$root/usr/share/common-licenses" \
    "$root/etc/profile" "$root/etc/profile.d" "$root/etc/skel" "$root/etc/dpkg" \
    "$root/etc/update-motd.d"
  find "$root/usr/share/doc" -mindepth 2 -maxdepth 2 ! -name copyright -exec rm -rf {} +
  mkdir -p "$root/tmp" "$root/root" "$root/home/nonroot" "$root/proc" "$root/sys" "$root/dev" "$root/run"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root" "$root/home/nonroot"
  chown 65532:65532 "$root/home/nonroot"
  commit_tree "$root" "$RUNTIME_IMAGE" \
    --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "org.opencontainers.image.description=Debian $SUITE runtime base (glibc, CA certificates, tzdata, user nonroot), assembled from .deb files" \
    --label "org.opencontainers.image.version=$(dpkg-deb -f "$debs"/libc6_*.deb Version)"
}

build_builder() {
  command -v debootstrap >/dev/null || { echo "$0: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  command -v rustc >/dev/null || { echo "$0: needs a Rust toolchain on PATH to copy in" >&2; exit 1; }
  local root=$work/builder sysroot
  debootstrap --variant=minbase --include=gcc,libc6-dev,binutils,ca-certificates \
    "$SUITE" "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # The builder trusts what this machine trusts: its local CAs (e.g. that of
  # a TLS-inspecting egress proxy, as on our CI machines) are added, so cargo
  # inside the build reaches crates.io as it does here. Only the builder:
  # the runtime base keeps Debian's bundle alone.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # The toolchain: rustc, cargo, the standard library (no docs, no rustup:
  # a toolchain is one directory that runs from wherever it is).
  sysroot=$(rustc --print sysroot)
  mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
  tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$root/usr/local/rust" -x
  commit_tree "$root" "$BUILDER_IMAGE" \
    --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.description=Debian $SUITE with gcc and $(rustc --version)" \
    --label "org.opencontainers.image.version=$(rustc --version | cut -d' ' -f2)"
}

case $what in
  runtime) build_runtime ;;
  builder) build_builder ;;
  all) build_runtime && build_builder ;;
esac
