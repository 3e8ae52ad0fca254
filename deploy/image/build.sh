#!/usr/bin/env bash
# The full image build: every stage of the Containerfile (cargo-chef,
# dependencies, the release build inside the image, the runtime stage),
# with buildah, layers cached, then the image checks (check.sh). Prints how
# long it took and the image's size (README: Operations).
#
# The base images default to the offline ones of base.sh (built first when
# missing), for machines without an image registry; with a registry, set
# BUILDER_IMAGE and RUNTIME_IMAGE (or run `buildah bud`/`docker build`
# without them: the Containerfile's defaults are the public images).
#
# usage: deploy/image/build.sh [TAG]   (default: localhost/tenancy:<version>)
# Needs root, buildah (`apt-get install buildah`), debootstrap and a Rust
# toolchain for the offline builder base, jq and grpcurl for the checks.
# A release build takes ~11 min on 2 cores outside the image; more inside.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
tag=${1:-localhost/tenancy:$version}
BUILDER_IMAGE=${BUILDER_IMAGE:-localhost/tenancy-base/builder:bookworm}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-localhost/tenancy-base/runtime:bookworm}
ensure_base() { # builder|runtime, image
  if [[ $2 == localhost/tenancy-base/* ]] && ! buildah images --quiet "$2" >/dev/null 2>&1; then
    BUILDER_IMAGE=$BUILDER_IMAGE RUNTIME_IMAGE=$RUNTIME_IMAGE deploy/image/base.sh "$1"
  fi
}
ensure_base builder "$BUILDER_IMAGE"
ensure_base runtime "$RUNTIME_IMAGE"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then revision="$revision-dirty"; fi

started=$SECONDS
buildah bud --isolation chroot --layers \
  --build-arg "BUILDER_IMAGE=$BUILDER_IMAGE" \
  --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -f Containerfile -t "$tag" .
took=$((SECONDS - started))
deploy/image/check.sh "$tag" "$revision"
echo "build.sh: $tag built in $((took / 60)) min $((took % 60)) s; $(buildah images --format '{{.Size}}' "$tag"), runtime base $(buildah images --format '{{.Size}}' "$RUNTIME_IMAGE")"
