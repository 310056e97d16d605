#!/usr/bin/env bash
# docker/push-images.sh REGISTRY: push every image of this tree to REGISTRY (e.g. ghcr.io/<owner>), as
# REGISTRY/<image>:<version>-<source hash>, :<version> and :latest. Used by the release job of
# .github/workflows/ci.yml on a version tag; EXPECT_VERSION (the tag without its "v") must equal pyproject.toml's
# version, so that a tag never ships images that call themselves something else. Refuses images that are missing
# or built from other sources than this tree (python3 -m shared.containers check-image).
set -euo pipefail
cd "$(dirname "$0")/.."
registry=${1:?usage: docker/push-images.sh REGISTRY}
registry=${registry,,}  # registries want lower case
prefix=${IMAGE_PREFIX:-oncoxai}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
if [[ -n ${EXPECT_VERSION:-} && $EXPECT_VERSION != "$version" ]]; then
  echo "error: the tag says version $EXPECT_VERSION, pyproject.toml says $version: bump pyproject.toml or retag" >&2
  exit 1
fi
# name image parent source-hash ..., one line per image (shared/containers.py)
mapfile -t specs < <(IMAGE_PREFIX=$prefix python3 -m shared.containers images)
IMAGE_PREFIX=$prefix python3 -m shared.containers check-image $(printf '%s\n' "${specs[@]}" | cut -d' ' -f1)
for spec in "${specs[@]}"; do
  read -r _ image _ hash _ <<<"$spec"
  for tag in "$version-$hash" "$version" latest; do
    docker tag "$image" "$registry/$image:$tag"
    docker push "$registry/$image:$tag"
  done
done
