#!/usr/bin/env bash
# docker/check-image.sh IMAGE SOURCE_HASH: fails, saying what to do, unless IMAGE exists and was built from
# these sources (its label org.oncoxai.source, set by make images, equals SOURCE_HASH of docker/source-hash.sh).
# make runs it before each stage with RUNNER=docker: an image older than the code would give old results.
set -euo pipefail
image=$1 expected=$2
if ! label=$(docker image inspect -f '{{index .Config.Labels "org.oncoxai.source"}}' "$image" 2>/dev/null); then
  echo "error: no image $image (run: make images, or make load-images with the tarballs made from this tree, or use RUNNER=local)" >&2
  exit 1
fi
if [[ $label != "$expected" ]]; then
  echo "error: image $image was built from other sources ($label) than this tree ($expected):" \
    "run make images, or make load-images with the tarballs made from this tree (or use RUNNER=local)" >&2
  exit 1
fi
