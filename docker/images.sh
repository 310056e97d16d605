#!/usr/bin/env bash
# Builds the images: the shared torch image first (docker/torch.Dockerfile), then one per stage from the template
# docker/stage.Dockerfile (${IMAGE_PREFIX}-<stage with - for _>). Called by `make images`. Which images there are,
# their build arguments (STAGE, EXTRA, IMAGE_NAME, PARENT: the torch image for the stages whose extra needs torch)
# and their source hashes come from `python3 -m shared.containers images`; this script streams the context, builds
# and times.
#
# Environment:
#   IMAGE_PREFIX   image names (default oncoxai)
#   BASE_IMAGE     the base of every image (default: the Dockerfiles' public python:3.11-slim-bookworm;
#                  docker/base.sh makes one offline)
#   STAGES         which stage images (default: every stage)
#   REBUILD        1: build every image even when its label org.oncoxai.source (a hash of that image's own sources,
#                  python3 -m shared.containers source-hash NAME) says it is current; by default such an image is kept
#   BUILD_NETWORK  network of the build containers (default host: pip reaches the index as the host does)
#   DOCKER_BUILDKIT  default 0: the Dockerfiles need nothing of BuildKit, and Debian's docker.io has no buildx
#   BUILD_LANES    2 (default): the torch lane (torch image, then its stages) and the other stages build side by
#                  side; 1: one after the other
#   BUILD_LOG_DIR  where each build's full log goes (default .cache/docker/build-logs)
#   VERSION        the project's version (default: pyproject.toml's); every image is tagged
#                  ${IMAGE_PREFIX}-<name>:<VERSION>-<source hash> as well as :latest, so that a shipped image says which
#                  release and which sources it holds (make save-images ships both tags)
#
# The build context is streamed to the engine as a tar of exactly what the Dockerfiles use (no .dockerignore
# needed, .venv/data/outputs are never sent). The build host's pip settings reach the build stages only:
# index URLs as PIP_* build arguments (file:// indexes, which a build cannot see, are left out) and its CA
# bundle (PIP_CERT / pip's `cert`) as docker/build-pip/ca.pem in the streamed context; neither ends up in an
# image. A line per image (name, size, build time) is appended to $BUILD_LOG_DIR/images.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${IMAGE_PREFIX:-oncoxai}
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}
network=${BUILD_NETWORK:-host}
logs=${BUILD_LOG_DIR:-.cache/docker/build-logs}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
mkdir -p "$logs"

# name image parent source-hash dockerfile build-args..., the torch image first
mapfile -t specs < <(IMAGE_PREFIX=$prefix python3 -m shared.containers images)
[[ ${#specs[@]} -gt 1 ]] || { echo "error: python3 -m shared.containers images listed no stage" >&2; exit 1; }
all_stages=$(printf '%s\n' "${specs[@]:1}" | cut -d' ' -f1)
STAGES=${STAGES:-$all_stages}

# -- the build host's pip settings -------------------------------------------------------------------------
host_python=python3
[[ -x .venv/bin/python ]] && host_python=.venv/bin/python
extra_dir=$(mktemp -d "${TMPDIR:-/tmp}/oncoxai-build.XXXXXX")
trap 'rm -rf "$extra_dir"' EXIT
mapfile -t settings < <("$host_python" - <<'EOF' 2>/dev/null || true
import os, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
conf = {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    section, _, name = key.partition(".")
    value = value.strip().strip("'\"")
    rank = {":env:": 3, "install": 2, "global": 1}.get(section, 0)
    if rank and rank >= conf.get(name, (0, ""))[0]:
        conf[name] = (rank, value)
def get(name, env):
    return os.environ.get(env) or conf.get(name, (0, ""))[1]
def urls(value):
    return " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
for name, env, value in (("index-url", "PIP_INDEX_URL", urls(get("index-url", "PIP_INDEX_URL"))),
                         ("extra-index-url", "PIP_EXTRA_INDEX_URL", urls(get("extra-index-url", "PIP_EXTRA_INDEX_URL"))),
                         ("trusted-host", "PIP_TRUSTED_HOST", get("trusted-host", "PIP_TRUSTED_HOST")),
                         ("timeout", "PIP_DEFAULT_TIMEOUT", get("timeout", "PIP_DEFAULT_TIMEOUT") or get("default-timeout", "PIP_DEFAULT_TIMEOUT"))):
    if value:
        print(f"ARG {env}={value}")
cert = get("cert", "PIP_CERT")
if cert and os.path.isfile(cert):
    print(f"CERT {cert}")
EOF
)
build_args=()
cert_member=()
for line in "${settings[@]}"; do
  case $line in
    "ARG "*) build_args+=(--build-arg "${line#ARG }"); echo "pip setting for the builds: ${line#ARG }" ;;
    "CERT "*)
      mkdir -p "$extra_dir/docker/build-pip"
      cp "${line#CERT }" "$extra_dir/docker/build-pip/ca.pem"
      cert_member=(-C "$extra_dir" docker/build-pip/ca.pem)
      echo "pip CA bundle for the builds: ${line#CERT }" ;;
  esac
done

# -- the whole project's resolution, once for every build (docker/install.py lock) ---------------------------
# Only when an image is to be built: with every image current (its label org.oncoxai.source is its sources' hash)
# nothing needs it, and resolving asks the package index for every package.
current() {  # "name image parent hash ...": the image is there, built from these sources, and REBUILD is not set
  local name image parent hash
  read -r name image parent hash _ <<<"$1"
  [[ ${REBUILD:-0} != 1 ]] &&
    [[ $(docker image inspect -f '{{index .Config.Labels "org.oncoxai.source"}}' "$image" 2>/dev/null || true) == "$hash" ]]
}
stale=0 torch_needed=0
for spec in "${specs[@]:1}"; do  # the stages asked for, and the torch image when one of them is built on it
  if grep -qx "$(cut -d' ' -f1 <<<"$spec")" <<<"${STAGES// /$'\n'}"; then
    current "$spec" || stale=1
    [[ $(cut -d' ' -f3 <<<"$spec") == torch ]] && torch_needed=1
  fi
done
if [[ $torch_needed == 1 ]]; then current "${specs[0]}" || stale=1; fi
lock_member=()
mkdir -p "$extra_dir/docker/build-pip"
if [[ $stale == 0 ]]; then
  echo "every image is built from these sources: nothing to resolve"
elif "$host_python" docker/install.py lock --out "$extra_dir/docker/build-pip/lock.txt" >"$logs/lock.log" 2>&1; then
  lock_member=(-C "$extra_dir" docker/build-pip/lock.txt)
  echo "resolved the project once for the builds: $(wc -l <"$extra_dir/docker/build-pip/lock.txt") packages"
else
  echo "warning: resolving on the build host failed (log: $logs/lock.log); each build resolves for itself" >&2
fi

# -- build --------------------------------------------------------------------------------------------------
context() {
  tar -c --owner=0 --group=0 --numeric-owner --mtime=2020-01-01 --sort=name \
    --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    pyproject.toml setup.py oncoxai/__init__.py constraints.txt README.md shared stages docker/install.py docker/build-pip \
    docker/*.Dockerfile \
    "${cert_member[@]}" "${lock_member[@]}"
}
size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f", $1 / 1e6}'; }
build() {  # build "name image parent hash dockerfile build-args..." [docker build args...]
  local spec=$1 name image parent hash file log start=$SECONDS
  local -a spec_args
  read -r name image parent hash file _ <<<"$spec"
  read -r -a spec_args <<<"$(cut -d' ' -f6- <<<"$spec")"
  shift
  log=$logs/${image#"$prefix"-}.log
  if current "$spec" && [[ $parent != torch || $torch_built == 0 ]]; then
    docker tag "$image" "$image:$version-$hash"
    echo "kept $image: built from these sources ($image:$version-$hash)"
    return 0
  fi
  [[ $name == torch ]] && torch_built=1
  local -a build_arg_flags=()
  for arg in "${spec_args[@]}"; do [[ -n $arg ]] && build_arg_flags+=(--build-arg "$arg"); done
  echo "building $image ($file${spec_args[*]:+: ${spec_args[*]}})"
  if ! context | docker build --force-rm --network "$network" -f "$file" -t "$image" -t "$image:$version-$hash" \
      --label "org.oncoxai.source=$hash" --label "org.opencontainers.image.version=$version" \
      "${build_args[@]}" "${build_arg_flags[@]}" "$@" - >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "error: building $image failed (full log: $log)" >&2
    exit 1
  fi
  local seconds=$((SECONDS - start)) size
  size=$(size_mb "$image")
  printf '%s\t%s\t%s\t%s\n' "$image" "$size" "$seconds" "$(date -u +%FT%TZ)" >>"$logs/images.tsv"
  echo "built $image ($image:$version-$hash): ${size} MB, ${seconds} s"
}
torch_built=0  # a rebuilt torch image means new base layers: its stage images are rebuilt on it
base_arg=()
[[ -n ${BASE_IMAGE:-} ]] && base_arg=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
torch_specs=() other_specs=()
for stage in $STAGES; do
  spec=$(printf '%s\n' "${specs[@]:1}" | awk -v s="$stage" '$1 == s') || true
  if [[ -z $spec ]]; then
    echo "error: no stage '$stage' (the stages: $(echo $all_stages))" >&2
    exit 1
  fi
  if [[ $(cut -d' ' -f3 <<<"$spec") == torch ]]; then torch_specs+=("$spec"); else other_specs+=("$spec"); fi
done
# Two lanes: the torch image and the stages built on it, one after the other; beside them the stages on the base
# image. Builds are mostly downloads, unpacking and layer writes, so two at a time finish sooner even on two cores
# (BUILD_LANES=1: one after the other). Every build gets BASE_IMAGE: the template's runtime stage names it.
torch_lane() {
  [[ ${#torch_specs[@]} -gt 0 ]] || return 0
  build "${specs[0]}" "${base_arg[@]}"
  for spec in "${torch_specs[@]}"; do build "$spec" "${base_arg[@]}"; done
}
other_lane() {
  for spec in "${other_specs[@]}"; do build "$spec" "${base_arg[@]}"; done
}
if [[ ${BUILD_LANES:-2} == 1 ]]; then
  torch_lane
  other_lane
else
  torch_lane & torch_pid=$!
  other_lane & other_pid=$!
  failed=0
  wait "$torch_pid" || failed=1
  wait "$other_pid" || failed=1
  [[ $failed == 0 ]] || { echo "error: an image failed to build (logs in $logs)" >&2; exit 1; }
fi
