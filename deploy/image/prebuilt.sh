#!/usr/bin/env bash
# The Containerfile's runtime stage around a binary built elsewhere (target
# `prebuilt`): what CI builds in seconds from the `tenancy` it has already
# compiled, instead of the full release build inside the image (see
# build.sh). Builds the offline runtime base first when RUNTIME_IMAGE is
# the local one and missing, then checks the result (check.sh).
#
# usage: deploy/image/prebuilt.sh BINARY [TAG]   (default tag: localhost/tenancy:prebuilt)
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=$1
tag=${2:-localhost/tenancy:prebuilt}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-localhost/tenancy-base/runtime:bookworm}
if [[ $RUNTIME_IMAGE == localhost/tenancy-base/* ]] && ! buildah images --quiet "$RUNTIME_IMAGE" >/dev/null 2>&1; then
  RUNTIME_IMAGE=$RUNTIME_IMAGE deploy/image/base.sh runtime
fi
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/tenancy"
buildah bud --isolation chroot --quiet --target prebuilt \
  --build-context "binary=$context" \
  --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
  --build-arg "VERSION=$("$binary" --version | cut -d' ' -f2)" \
  --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -f Containerfile -t "$tag" "$context" >/dev/null
deploy/image/check.sh "$tag" "$revision"
