#!/usr/bin/env bash
# docker/push-images.sh REGISTRY: push every image of this tree to REGISTRY (e.g. ghcr.io/<owner>), as
# REGISTRY/<image>:<version>-<source hash>, :<version> and :latest. Used by the release job of
# .github/workflows/ci.yml on a version tag; EXPECT_VERSION (the tag without its "v") must equal pyproject.toml's
# version, so that a tag never ships images that call themselves something else. Refuses images that are missing
# or built from other sources than this tree (docker/check-image.sh).
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
names=() sources=()
while read -r name source; do names+=("$name"); sources+=("$source"); done < <(bash docker/image-names.sh)
for i in "${!names[@]}"; do
  name=${names[$i]}
  hash=$(bash docker/source-hash.sh "${sources[$i]}")
  bash docker/check-image.sh "$prefix-$name" "$hash"
  for tag in "$version-$hash" "$version" latest; do
    docker tag "$prefix-$name" "$registry/$prefix-$name:$tag"
    docker push "$registry/$prefix-$name:$tag"
  done
done
