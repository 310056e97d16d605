#!/usr/bin/env bash
# docker/save-images.sh DIR: every image of this tree in one `docker save` tarball, with its sha256, for collaborators
# (make save-images IMAGES_DIR=DIR). The shared torch image's layers are stored once for its stages.
#
# Writes DIR/${IMAGE_PREFIX}-images-<version>.tar (both tags of every image: :latest and :<version>-<source hash>)
# and DIR/SHA256SUMS, each under a temporary name first: a failed or interrupted save leaves nothing that looks
# finished. Refuses, naming the image, when an image is missing or was built from other sources than this tree
# (run make images first; python3 -m shared.containers check-image): a collaborator must get what this tree runs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: docker/save-images.sh DIR}
prefix=${IMAGE_PREFIX:-oncoxai}
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}

# name image parent source-hash ..., one line per image (shared/containers.py)
mapfile -t specs < <(IMAGE_PREFIX=$prefix python3 -m shared.containers images)
IMAGE_PREFIX=$prefix python3 -m shared.containers check-image $(printf '%s\n' "${specs[@]}" | cut -d' ' -f1)
refs=()
for spec in "${specs[@]}"; do
  read -r _ image _ hash _ <<<"$spec"
  docker tag "$image" "$image:$version-$hash"
  refs+=("$image:latest" "$image:$version-$hash")
done

mkdir -p "$dir"
tarball=$prefix-images-$version.tar
tmp=$dir/.$tarball.tmp-$$
trap 'rm -f "$tmp" "$dir/.SHA256SUMS.tmp-$$"' EXIT
start=$SECONDS
docker save -o "$tmp" "${refs[@]}"
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
chmod 644 "$tmp"  # docker save makes it private to its user; it is meant to be copied
mv -f "$tmp" "$dir/$tarball"
printf '%s  %s\n' "$sum" "$tarball" >"$dir/.SHA256SUMS.tmp-$$"
mv -f "$dir/.SHA256SUMS.tmp-$$" "$dir/SHA256SUMS"
size=$(stat -c %s "$dir/$tarball")
echo "saved ${#specs[@]} images (${refs[*]}) to $dir/$tarball: $((size / 1000000)) MB in $((SECONDS - start)) s"
echo "sha256 $sum"
