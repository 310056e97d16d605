#!/usr/bin/env bash
# docker/load-images.sh DIR: check DIR/SHA256SUMS, then `docker load` every tarball it lists (make load-images).
# Nothing is loaded unless every listed tarball is there and matches its sum: a truncated or corrupted copy is one
# line naming the file, exit 1.
set -euo pipefail
dir=${1:?usage: docker/load-images.sh DIR}
sums=$dir/SHA256SUMS
if [[ ! -f $sums ]]; then
  echo "error: $sums: no checksum list; copy the whole folder that make save-images wrote (tarballs and SHA256SUMS)" >&2
  exit 1
fi
mapfile -t tarballs < <(awk 'NF == 2 {print $2}' "$sums")
if [[ ${#tarballs[@]} -eq 0 ]]; then
  echo "error: $sums lists no tarball; copy it again from where make save-images wrote it" >&2
  exit 1
fi
for tarball in "${tarballs[@]}"; do
  if [[ ! -f $dir/$tarball ]]; then
    echo "error: $dir/$tarball: missing (listed in SHA256SUMS); copy it again" >&2
    exit 1
  fi
  want=$(awk -v f="$tarball" '$2 == f {print $1}' "$sums")
  have=$(sha256sum "$dir/$tarball" | cut -d' ' -f1)
  if [[ $have != "$want" ]]; then
    echo "error: $dir/$tarball: sha256 $have, SHA256SUMS says $want (corrupted or incomplete copy): copy it again" >&2
    exit 1
  fi
done
for tarball in "${tarballs[@]}"; do
  start=$SECONDS
  docker load -i "$dir/$tarball" | sed 's/^/  /'
  echo "loaded $dir/$tarball in $((SECONDS - start)) s"
done
