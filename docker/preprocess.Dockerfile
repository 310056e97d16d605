# Stage image: python -m stages.preprocess, with only the dependencies of pyproject.toml's `preprocess` extra (pinned to the
# whole project's resolution, so that a container gives the same result as the local .venv).
#
#   make images                      (builds every stage image; docs/how-to/containers.md)
#   docker run --rm --network none --user "$(id -u):$(id -g)" -v "$PWD/data:/app/data:ro" \
#     -v "$PWD/outputs:/app/outputs" oncoxai-preprocess --config outputs/<experiment>/config.yaml
#
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv module. The default is public; where no
# registry is reachable, docker/base.sh makes one offline.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Build stage: pip runs here with the build host's pip settings (PIP_* build arguments, docker/build-pip/);
# only /opt/venv and /opt/code are copied out of it.
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=120
WORKDIR /tmp/src
COPY docker/build-pip/ /tmp/build-pip/
COPY docker/install.py pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python install.py deps --extra preprocess \
 && /opt/venv/bin/python install.py backend
COPY pyproject.toml README.md /tmp/code/
COPY shared/ /tmp/code/shared/
COPY stages/ /tmp/code/stages/
RUN /opt/venv/bin/python install.py code /tmp/code --prefix /opt/code

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 oncoxai \
 && useradd --no-log-init --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin oncoxai
# A non-root user with a read-only root file system needs its home, caches and config under /tmp (a tmpfs when
# run by make); TORCH_HOME/hub/checkpoints is where ImageNet weights are looked for (make mounts the host's).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    TORCH_HOME=/opt/torch
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/code/ /opt/venv/
# data/ and outputs/ are mounted here; configs name their files relative to it.
WORKDIR /app
USER 10001:10001
LABEL org.opencontainers.image.title="oncoxai-preprocess" \
      org.opencontainers.image.description="oncoxai stage preprocess: python -m stages.preprocess --config FILE"
ENTRYPOINT ["python", "-m", "stages.preprocess"]
CMD ["--help"]
