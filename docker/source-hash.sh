#!/usr/bin/env bash
# docker/source-hash.sh NAME: a short hash of what goes into image NAME, a stage or "torch" (the shared base):
# for a stage, the files it runs (python3 -m shared.sources list NAME: its own package and what it imports, nothing
# else), pyproject.toml, constraints.txt, the installer and its Dockerfile (and the torch image's, when it builds on
# it); for torch, the same without code. `make images` labels each image with it (org.oncoxai.source) and rebuilds
# only images whose label differs; `make ... RUNNER=docker` refuses to run an image whose label differs from the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: docker/source-hash.sh STAGE|torch}
files=(pyproject.toml constraints.txt docker/install.py "docker/$name.Dockerfile")
if [[ $name == torch ]]; then
  python3 -m shared.sources hash - "${files[@]}"
else
  grep -q '^ARG TORCH_IMAGE' "docker/$name.Dockerfile" && files+=(docker/torch.Dockerfile)
  python3 -m shared.sources hash "$name" "${files[@]}"
fi
