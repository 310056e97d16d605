#!/usr/bin/env bash
# make test-docker: the containers are real. Builds every image and checks that `make all RUNNER=docker`
# reproduces the local run of the demo.
#
#  0. make setup; the local reference, make all CONFIG=configs/demo.yaml RUNNER=local (nothing to do when
#     outputs/demo is current), runs in the background meanwhile (TEST_DOCKER_SERIAL=1: first, alone)
#  1. an engine: the one that answers (DOCKER_HOST or the default socket), else a private dockerd started here
#     (installing Debian's docker.io if needed) with --bridge=none --iptables=false --ip-masq=false and its own
#     data-root, exec-root, pidfile, socket and config file, reached through DOCKER_HOST; it is stopped on exit,
#     failure or interrupt included (TEST_DOCKER_ENGINE=private always starts one; =existing never does)
#  2. a base image: BASE_IMAGE if given (e.g. python:3.11-slim-bookworm where a registry is reachable), else
#     one bootstrapped offline by docker/base.sh (debootstrap | docker import)
#  3. make images (docker/images.sh: torch image, then one per stage; times and sizes in build-logs/images.tsv)
#  3b. the hand-off: make save-images (one tarball + SHA256SUMS), every project image removed from the engine, a
#     collaborator's folder made (this tree's files, no .venv, the demo's fixture copied in), make load-images there
#     (TEST_DOCKER_HANDOFF=0 skips the save / remove / load round trip, about 6 minutes on 2 cores; the
#     collaborator's folder is still made and the demo runs from it)
#  4. the demo with RUNNER=docker from that folder, into a separate outputs folder (.cache/test-docker/outputs), as
#     a non-root user (the calling user; uid TEST_DOCKER_UID, default 4242, when called as root): planning runs in
#     the report image, so no Python stack is used; then make bundle there, twice (the same bytes)
#  4b. the TensorFlow stage: configs/demo_tcga.yaml cut to preprocess -> train_tf_gradcam -> report and 3 epochs
#     (TEST_DOCKER_TF_ARGS), run locally and with RUNNER=docker
#  4c. the MRI stage: configs/demo_mri.yaml (train_3d_mri -> explain -> report) with 2 epochs
#     (TEST_DOCKER_MRI_ARGS), run locally and with RUNNER=docker
#  5. pytest -m docker tests/e2e/test_docker.py: summary.json equal to the local one within SUMMARY_TOLERANCE
#     (default 1e-6: the runs are expected to be bit-identical), same package versions and commit in the
#     manifests, outputs owned by that user, a second run does nothing, the images' user, labels and layers
#
# TEST_DOCKER_STEPS=images stops after step 3 (no local reference, no runs): with KEEP_ENGINE_DATA=1 a later full
# run finds the images current and keeps them. TEST_DOCKER_STEPS=base does steps 1 and 2 only, without make setup
# (nothing of it needs the local environment): .ci/run builds the base image this way while make setup runs.
#
# TEST_DOCKER_ARGS="--set key=value ..." gives both runs the same overrides (the local one then goes to
# .cache/test-docker/local-outputs), e.g. to shorten them.
#
# Idempotent: a dockerd left behind by a killed run is stopped first; the docker outputs are redone each time.
# The private engine's data-root (images and build cache) is removed at the end unless KEEP_ENGINE_DATA=1,
# which makes the next run reuse its images and build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

prefix=${IMAGE_PREFIX:-oncoxai}
work=${TEST_DOCKER_DIR:-$repo/.cache/test-docker}
engine_mode=${TEST_DOCKER_ENGINE:-auto}
steps=${TEST_DOCKER_STEPS:-all}
[[ $steps == all || $steps == images || $steps == base ]] ||
  { echo "error: TEST_DOCKER_STEPS must be all, images or base, not '$steps'" >&2; exit 2; }
config=configs/demo.yaml
export SUMMARY_TOLERANCE=${SUMMARY_TOLERANCE:-1e-6}
mkdir -p "$work"
timings=$work/timings.tsv
: >"$timings"
t0=$SECONDS

log() { printf '[test-docker %s] %s\n' "$(date +%T)" "$*"; }
phase_start=0
phase() { phase_start=$SECONDS; log "$*"; }
phase_done() { printf '%s\t%s\n' "$1" "$((SECONDS - phase_start))" >>"$timings"; log "$1: $((SECONDS - phase_start)) s"; }

# -- the summary: image sizes, build times, wall times (printed at the end, whether the run passed or not) -------
logs=$work/build-logs
docker_out=$work/outputs
local_out=${ONCOXAI_OUTPUTS:-outputs}
local_ran=0
rm -rf "$docker_out" "$work/summary-diff.json" "$work/summary.txt" "$logs/images.tsv"  # nothing from an earlier run
stage_time() {  # sum of the stages' own wall times, from their manifests
  [[ -x .venv/bin/python ]] || { echo "?"; return; }
  .venv/bin/python - "$1" <<'EOF' 2>/dev/null || echo "?"
import json, sys
from pathlib import Path
total = sum(json.loads((Path(sys.argv[1]) / s / "manifest.json").read_text())["wall_time_s"]
            for s in ("preprocess", "train_torch", "explain", "report"))
print(f"{total:.0f}")
EOF
}
phase_time() { awk -F'\t' -v k="$1" '$1==k{print $2}' "$timings"; }
print_summary() {
  {
    if [[ -s $logs/images.tsv ]]; then
      echo "images (size as docker reports it, build time; the torch stages share the torch image's layers):"
      awk -F'\t' '{printf "  %-24s %6s MB  %4s s\n", $1, $2, $3}' "$logs/images.tsv"
    fi
    if [[ -f $docker_out/demo/report/manifest.json ]]; then
      echo "demo, the four stages' own wall times (manifests): docker $(stage_time "$docker_out/demo") s," \
        "local $(stage_time "$local_out/demo") s"
      echo "demo end to end: docker $(phase_time docker_demo) s$([[ $local_ran == 1 ]] &&
        echo ", local $(phase_time local_demo) s (in parallel with the builds unless TEST_DOCKER_SERIAL=1)")"
    fi
    if [[ -f $work/summary-diff.json ]]; then
      echo "local vs docker: $(tr -d '\n' <"$work/summary-diff.json" | sed -E 's/.*"max_abs_diff": ([^,]*),.*"files_byte_identical": "([^"]*)".*/largest difference in summary.json \1; \2 output files byte-identical/')"
    fi
    [[ -f $work/save-images.log ]] && grep -h "^saved" "$work/save-images.log" | sed 's/^/hand-off: /'
    [[ -f $work/bundle-2.log ]] && grep -h "report.zip" "$work/bundle-1.log" "$work/bundle-2.log" | sed 's/^/bundle: /'
    echo "phases (s): $(awk -F'\t' '{printf "%s %s, ", $1, $2}' "$timings")total $((SECONDS - t0))"
  } | tee "$work/summary.txt"
}

# -- cleanup: whatever happens, the engine started here is stopped ---------------------------------------------
dockerd_pid=
run_dir=
data_root=
stop_engine() {
  [[ -n $dockerd_pid ]] || return 0
  log "stopping the private dockerd (pid $dockerd_pid)"
  # Containers first (none should be left: every run is --rm), then the daemon.
  docker ps -q 2>/dev/null | xargs -r docker kill >/dev/null 2>&1 || true
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$dockerd_pid" 2>/dev/null; then
    log "dockerd did not stop in 60 s: killing it"
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  dockerd_pid=
  rm -f "$work/dockerd.pid"
  # Mounts the daemon may have left (overlay layers, its exec-root) before removing folders.
  for dir in "$run_dir" "$data_root"; do
    [[ -n $dir && -d $dir ]] || continue
    grep -F " $dir/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  done
  [[ -n $run_dir ]] && rm -rf "$run_dir"
  if [[ -n $data_root && ${KEEP_ENGINE_DATA:-0} != 1 ]]; then
    log "removing the private engine's data ($data_root; KEEP_ENGINE_DATA=1 keeps it)"
    rm -rf "$data_root"
  fi
}
local_pid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $local_pid ]] && kill -0 "$local_pid" 2>/dev/null; then
    log "stopping the local reference run (process group $local_pid)"
    kill -TERM -- "-$local_pid" 2>/dev/null || true
    wait "$local_pid" 2>/dev/null || true
  fi
  print_summary || true
  stop_engine
  if [[ $rc -eq 0 ]]; then log "PASSED in $((SECONDS - t0)) s"; else log "FAILED (exit $rc) after $((SECONDS - t0)) s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- the private engine ---------------------------------------------------------------------------------------
install_docker_io() {
  log "installing Debian's docker.io (its service is not started: a private daemon is)"
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; added_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  [[ $added_policy == 1 ]] && rm -f "$policy"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    # Never the default daemon (a 172.17/16 bridge and firewall rules), not even by socket activation.
    systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
  fi
}

start_engine() {
  if [[ $(id -u) != 0 ]]; then
    echo "error: no Docker engine answers, and starting one needs root" >&2
    exit 1
  fi
  command -v dockerd >/dev/null 2>&1 || install_docker_io
  command -v docker >/dev/null 2>&1 || { echo "error: no docker client" >&2; exit 1; }
  data_root=$work/engine
  # A daemon left by an earlier run that was killed before its cleanup: stop it.
  if [[ -f $work/dockerd.pid ]]; then
    local old
    old=$(cat "$work/dockerd.pid")
    if [[ -n $old ]] && kill -0 "$old" 2>/dev/null && tr '\0' ' ' <"/proc/$old/cmdline" | grep -q -- "--data-root $data_root"; then
      log "stopping a dockerd left by an earlier run (pid $old)"
      kill -TERM "$old" || true
      for _ in $(seq 60); do kill -0 "$old" 2>/dev/null || break; sleep 1; done
      kill -KILL "$old" 2>/dev/null || true
    fi
    rm -f "$work/dockerd.pid"
  fi
  # exec-root, pidfile and socket in a short temporary folder (unix socket paths are limited to 108 bytes).
  run_dir=$(mktemp -d /tmp/oncoxai-dockerd.XXXXXX)
  mkdir -p "$data_root"
  echo '{}' >"$run_dir/daemon.json"  # not the host's /etc/docker/daemon.json
  log "starting a private dockerd (data-root $data_root, socket $run_dir/docker.sock)"
  setsid dockerd --bridge=none --iptables=false --ip-masq=false \
    --config-file "$run_dir/daemon.json" --data-root "$data_root" --exec-root "$run_dir/exec" \
    --pidfile "$run_dir/dockerd.pid" -H "unix://$run_dir/docker.sock" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  echo "$dockerd_pid" >"$work/dockerd.pid"
  export DOCKER_HOST=unix://$run_dir/docker.sock
  for _ in $(seq 90); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      tail -n 30 "$work/dockerd.log" >&2
      echo "error: dockerd exited (log above: $work/dockerd.log)" >&2
      exit 1
    fi
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$work/dockerd.log" >&2; echo "error: dockerd did not answer in 90 s" >&2; exit 1; }
  log "engine: $(docker version -f 'server {{.Server.Version}}, storage driver' 2>/dev/null) $(docker info -f '{{.Driver}}')"
}

# -- 0. the local environment, and the local reference in the background --------------------------------------
# The local demo (make all CONFIG=configs/demo.yaml RUNNER=local: nothing to do when outputs/demo is current) runs while the engine
# starts and the images build; TEST_DOCKER_SERIAL=1 runs it first, alone (cleaner timings, a longer run).
# With TEST_DOCKER_ARGS (e.g. "--set train_torch.epochs=3") both runs get those overrides, and the local
# reference goes to .cache/test-docker/local-outputs instead of outputs/.
if [[ $steps != base ]]; then
  phase "local environment (make setup)"
  make --no-print-directory setup PYTHON="${PYTHON:-python3}" >"$work/setup.log" 2>&1 ||
    { tail -n 40 "$work/setup.log" >&2; echo "error: make setup failed (log: $work/setup.log)" >&2; exit 1; }
  phase_done setup
fi
args=${TEST_DOCKER_ARGS:-}
if [[ -n $args ]]; then
  local_out=$work/local-outputs
else
  local_out=${ONCOXAI_OUTPUTS:-outputs}
fi
export config args local_out timings
local_demo() {
  local start=$SECONDS
  make --no-print-directory fixture PYTHON="${PYTHON:-python3}" &&
    ONCOXAI_OUTPUTS=$local_out make --no-print-directory all CONFIG="$config" ARGS="$args" RUNNER=local \
      PYTHON="${PYTHON:-python3}" &&
    printf 'local_demo\t%s\n' "$((SECONDS - start))" >>"$timings"
}
local_pid=
if [[ $steps != all ]]; then
  log "TEST_DOCKER_STEPS=$steps: the engine, the base image$([[ $steps == images ]] && echo " and the images") only"
elif [[ ${TEST_DOCKER_SERIAL:-0} == 1 ]]; then
  log "local reference: make all CONFIG=$config RUNNER=local${args:+ ARGS=\"$args\"} -> $local_out (first)"
  local_demo >"$work/local-demo.log" 2>&1 ||
    { tail -n 40 "$work/local-demo.log" >&2; echo "error: the local demo failed (log: $work/local-demo.log)" >&2; exit 1; }
else
  log "local reference: make all CONFIG=$config RUNNER=local${args:+ ARGS=\"$args\"} -> $local_out (in the background)"
  setsid bash -c "$(declare -f local_demo); local_demo" >"$work/local-demo.log" 2>&1 &
  local_pid=$!
fi

# -- 1. an engine ----------------------------------------------------------------------------------------------
phase "engine"
if [[ $engine_mode != private ]] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  log "using the engine that answers (${DOCKER_HOST:-default socket}); it is left running"
elif [[ $engine_mode == existing ]]; then
  echo "error: TEST_DOCKER_ENGINE=existing but no engine answers" >&2
  exit 1
else
  start_engine
fi
phase_done engine

# -- 2. a base image -------------------------------------------------------------------------------------------
phase "base image"
if [[ -n ${BASE_IMAGE:-} ]]; then
  base=$BASE_IMAGE
  log "base image $base (given)"
else
  base=$prefix-base:bookworm
  IMAGE_PREFIX=$prefix WORK_DIR=$work bash docker/base.sh "$base"
fi
phase_done base_image
if [[ $steps == base ]]; then
  exit 0
fi

# -- 3. the images ---------------------------------------------------------------------------------------------
phase "make images"
mkdir -p "$logs"
: >"$logs/images.tsv"
BUILD_LOG_DIR=$logs make --no-print-directory images IMAGE_PREFIX="$prefix" BASE_IMAGE="$base"
phase_done images
if [[ $steps == images ]]; then
  exit 0
fi

# -- the local reference, finished ---------------------------------------------------------------------------
if [[ -n $local_pid ]]; then
  phase "waiting for the local reference"
  if ! wait "$local_pid"; then
    local_pid=
    tail -n 40 "$work/local-demo.log" >&2
    echo "error: the local demo failed (log: $work/local-demo.log)" >&2
    exit 1
  fi
  local_pid=
  phase_done wait_local
fi
if grep -q "run-stage" "$work/local-demo.log"; then local_ran=1; else local_ran=0; fi

# -- 3b. the hand-off: tarballs, a clean engine, a collaborator's folder ------------------------------------------
images_dir=$work/images
handoff=${TEST_DOCKER_HANDOFF:-1}
if [[ $handoff == 1 ]]; then
  phase "make save-images -> $images_dir"
  rm -rf "$images_dir"
  make --no-print-directory save-images IMAGE_PREFIX="$prefix" IMAGES_DIR="$images_dir" | tee "$work/save-images.log"
  phase_done save_images
  log "removing every $prefix image but the base from the engine"
  docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "^$prefix-" | grep -v "^$prefix-base:" |
    xargs -r docker rmi >/dev/null
  docker image prune -f >/dev/null
else
  log "TEST_DOCKER_HANDOFF=0: no save-images / rmi / load-images round trip; the built images stay in the engine"
fi
clean=$work/collaborator
rm -rf "$clean"
# A collaborator's checkout: this commit, plus this tree's uncommitted changes (none in CI); no .venv (a symlinked
# one is not ignored by git), no outputs. test_docker.py checks that it still has no .venv after the runs.
git clone -q --no-local "$repo" "$clean" 2>/dev/null || mkdir -p "$clean"
git ls-files -z -c -o --exclude-standard -- . ':(exclude).venv' |
  tar --null --ignore-failed-read -T - -c 2>/dev/null | tar -x -C "$clean"
mkdir -p "$clean/data"
cp -a data/demo "$clean/data/demo"
if [[ $handoff == 1 ]]; then
  phase "make load-images in the collaborator's folder ($clean)"
  make --no-print-directory -C "$clean" load-images IMAGES_DIR="$images_dir" | tee "$work/load-images.log"
  phase_done load_images
fi

# -- 4. the demo in containers, from the collaborator's folder ------------------------------------------------------
mkdir -p "$docker_out/demo"
if [[ $(id -u) == 0 ]]; then
  uid=${TEST_DOCKER_UID:-4242}
  user=$uid:$uid
  chown -R "$user" "$docker_out"  # the container user owns its outputs volume, as a calling user would
else
  user=$(id -u):$(id -g)
fi
phase "demo with RUNNER=docker as $user from $clean -> $docker_out"
ONCOXAI_OUTPUTS=$docker_out PATH=$(echo "$PATH" | tr ':' '\n' | grep -v "/.venv/" | paste -sd:) \
  make --no-print-directory -C "$clean" all CONFIG=$config ARGS="$args" RUNNER=docker VENV="$clean/.venv" \
  IMAGE_PREFIX="$prefix" DOCKER_USER="$user" 2>&1 | tee "$work/docker-demo.log"
phase_done docker_demo
phase "make bundle RUNNER=docker from $clean (twice: the same bytes)"
for i in 1 2; do
  ONCOXAI_OUTPUTS=$docker_out make --no-print-directory -C "$clean" bundle CONFIG=$config ARGS="$args" RUNNER=docker \
    VENV="$clean/.venv" IMAGE_PREFIX="$prefix" DOCKER_USER="$user" 2>&1 | tee "$work/bundle-$i.log"
done
phase_done bundle

# -- 4b/4c. the TensorFlow and MRI stages: each experiment short, local then RUNNER=docker -------------------------
other_experiment() {  # NAME CONFIG ARGS LOCAL_OUT
  local name=$1 cfg=$2 cfg_args=$3 out=$4 exp_name
  exp_name=$(basename "$cfg" .yaml)
  rm -rf "$out"
  phase "$name experiment ($cfg, $cfg_args): local -> $out, then RUNNER=docker -> $docker_out"
  ONCOXAI_OUTPUTS=$out make --no-print-directory all CONFIG=$cfg ARGS="$cfg_args" RUNNER=local \
    >"$work/local-$name.log" 2>&1 || { tail -n 40 "$work/local-$name.log" >&2; echo "error: the local $name run failed" >&2; exit 1; }
  mkdir -p "$docker_out/$exp_name"
  [[ $(id -u) == 0 ]] && chown -R "$user" "$docker_out/$exp_name"
  ONCOXAI_OUTPUTS=$docker_out make --no-print-directory all CONFIG=$cfg ARGS="$cfg_args" RUNNER=docker \
    IMAGE_PREFIX="$prefix" DOCKER_USER="$user" 2>&1 | tee "$work/docker-$name.log"
  phase_done "${name}_experiment"
}
tf_local=$work/local-outputs-tf
other_experiment tf configs/demo_tcga.yaml "${TEST_DOCKER_TF_ARGS:-"--set stages=[preprocess,train_tf_gradcam,report] --set train_tf_gradcam.epochs=3 --set train_tf_gradcam.min_epochs=0"}" "$tf_local"
mri_local=$work/local-outputs-mri
other_experiment mri configs/demo_mri.yaml "${TEST_DOCKER_MRI_ARGS:-"--set train_3d_mri.epochs=2"}" "$mri_local"

# -- 5. the comparison -----------------------------------------------------------------------------------------
phase "compare with the local run (tolerance $SUMMARY_TOLERANCE)"
ONCOXAI_DOCKER_OUTPUTS=$docker_out ONCOXAI_LOCAL_OUTPUTS=$local_out TEST_DOCKER_USER=$user IMAGE_PREFIX=$prefix \
  ONCOXAI_TF_LOCAL_OUTPUTS=$tf_local ONCOXAI_MRI_LOCAL_OUTPUTS=$mri_local \
  TEST_DOCKER_COLLABORATOR=$clean TEST_DOCKER_IMAGES_DIR=$images_dir TEST_DOCKER_HANDOFF=$handoff \
  TEST_DOCKER_ARGS=$args \
  TEST_DOCKER_LOG_DIR=$work .venv/bin/python -m pytest -q -p no:cacheprovider -m docker tests/e2e/test_docker.py
phase_done compare
