#!/usr/bin/env bash
# Build a Debian bookworm base image without any container registry: debootstrap a minimal root file system
# (python3, venv, pip, CA certificates) from the Debian archive and `docker import` it.
#
#   docker/base.sh [IMAGE]          default IMAGE: ${IMAGE_PREFIX:-oncoxai}-base:bookworm
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), WORK_DIR (scratch space, default a temp
# folder), FORCE=1 to rebuild an image that already exists. Needs root (debootstrap) and a running engine.
# The stage Dockerfiles take it as `--build-arg BASE_IMAGE=IMAGE`; on a workstation their public default
# (python:3.11-slim-bookworm) is used instead and this script is not needed.
set -euo pipefail

image=${1:-${IMAGE_PREFIX:-oncoxai}-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ ${FORCE:-0} != 1 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image exists (FORCE=1 rebuilds it)"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "error: debootstrap needs root; run as root or pass BASE_IMAGE=<an image with python3 and venv>" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

scratch=$(mktemp -d "${WORK_DIR:-${TMPDIR:-/tmp}}/oncoxai-base.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
rootfs=$scratch/rootfs

echo "debootstrap bookworm ($mirror) -> $image"
start=$SECONDS
if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
  tail -n 30 "$scratch/debootstrap.log" >&2
  echo "error: debootstrap failed (log above)" >&2
  exit 1
fi
# What a container never needs: downloaded packages, package lists, the host's name and resolver.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase bookworm (python3, python3-venv, python3-pip, ca-certificates)" \
  - "$image" >/dev/null
echo "base image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - start)) s"
