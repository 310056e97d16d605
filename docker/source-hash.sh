#!/usr/bin/env bash
# Prints a short hash of everything that goes into the stage images: the code (shared/, stages/), pyproject.toml,
# constraints.txt and the Dockerfiles with their installer. `make images` labels every image with it
# (org.oncoxai.source) and `make ... RUNNER=docker` refuses to run an image whose label differs from the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  find shared stages -type f \( -name '*.py' -o -path '*/templates/*' \) ! -path '*/__pycache__/*' -print
  printf '%s\n' pyproject.toml constraints.txt docker/install.py docker/*.Dockerfile
} | LC_ALL=C sort | while IFS= read -r f; do printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"; done |
  sha256sum | cut -c1-16
