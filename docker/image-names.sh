#!/usr/bin/env bash
# docker/image-names.sh: the project's images, one per line as "<image suffix> <source-hash name>": the shared torch
# image first, then one per docker/<stage>.Dockerfile (oncoxai-<stage with - for _>). Read by save-images.sh and
# push-images.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "torch torch"
for f in docker/*.Dockerfile; do
  f=${f##*/}; f=${f%.Dockerfile}
  [[ $f == torch ]] || echo "${f//_/-} $f"
done
