# Every stage image, from one template: python -m oncoxai.stages.<STAGE> with only the dependencies of pyproject.toml's
# <EXTRA> extra, pinned to the whole project's resolution so that a container gives the same result as the local
# .venv. make images builds one per stage (docker/images.sh; the build arguments come from
# `python3 -m shared.containers images`), e.g. by hand:
#
#   docker build -f docker/stage.Dockerfile --build-arg STAGE=report --build-arg EXTRA=report \
#     --build-arg IMAGE_NAME=oncoxai-report -t oncoxai-report .
#   docker run --rm --network none --user "$(id -u):$(id -g)" -v "$PWD/data:/app/data:ro" \
#     -v "$PWD/outputs:/app/outputs" oncoxai-report --config outputs/<experiment>/config.yaml
#
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv module. The default is public; where no
# registry is reachable, docker/base.sh makes one offline. For TensorFlow on a GPU, build train_tf_gradcam on a CUDA
# base with `tensorflow` in its extra.
# PARENT: what the stage's packages go on: `runtime` (below: BASE_IMAGE with a venv holding only pip, and the user), or the
# shared torch image (oncoxai-torch, docker/torch.Dockerfile: the same runtime with torch) for the stages whose extra
# needs torch, which then share its 5 GB of layers.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG PARENT=runtime

# The venv keeps only pip: the build stage installs as the non-root user into a prefix and cannot replace what the
# venv holds, so the setuptools that `venv` adds would block an extra that pins another one (train_tf_gradcam's).
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 oncoxai \
 && useradd --no-log-init --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin oncoxai \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools
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
WORKDIR /app
USER 10001:10001

# Build stage: pip runs here, as the image's non-root user, with the build host's pip settings (PIP_* build
# arguments, docker/build-pip/); only what it adds (/tmp/deps, /tmp/code-install) is copied out of it, onto the
# parent's venv.
FROM ${PARENT} AS build
ARG EXTRA
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=120
WORKDIR /tmp/src
COPY docker/build-pip/ /tmp/build-pip/
COPY docker/install.py pyproject.toml constraints.txt ./
RUN python install.py deps --extra "${EXTRA:?build with --build-arg EXTRA=NAME}" --prefix /tmp/deps \
 && python install.py backend
# the project installs as the package oncoxai (setup.py): its __init__ makes shared and stages importable by those
# names inside it (the image needs neither the command line nor fetch and the fixtures)
COPY pyproject.toml setup.py README.md /tmp/code/
COPY oncoxai/__init__.py /tmp/code/oncoxai/
COPY shared/ /tmp/code/shared/
COPY stages/ /tmp/code/stages/
RUN python install.py code /tmp/code --prefix /tmp/code-install

FROM ${PARENT}
ARG STAGE
ARG IMAGE_NAME
# USER, LOGNAME: MONAI (train_3d_mri) asks for the user's name on import (getpass.getuser()), which fails for a uid
# without a passwd entry (make runs containers as the calling user); getuser() reads USER first.
# TF_CPP_MIN_LOG_LEVEL: TensorFlow's C++ log lines (train_tf_gradcam; nothing else reads it).
# ONCOXAI_STAGE: the stage the entrypoint runs (an exec-form ENTRYPOINT cannot name a build argument).
ENV USER=oncoxai \
    LOGNAME=oncoxai \
    TF_CPP_MIN_LOG_LEVEL=3 \
    ONCOXAI_STAGE=${STAGE}
COPY --from=build /tmp/deps/ /opt/venv/
COPY --from=build /tmp/code-install/ /opt/venv/
# data/ and outputs/ are mounted here; configs name their files relative to it.
WORKDIR /app
USER 10001:10001
LABEL org.opencontainers.image.title="${IMAGE_NAME}" \
      org.opencontainers.image.description="oncoxai stage ${STAGE}: python -m oncoxai.stages.${STAGE} --config FILE"
ENTRYPOINT ["/bin/sh", "-c", "exec python -m \"oncoxai.stages.${ONCOXAI_STAGE:?}\" \"$@\"", "--"]
CMD ["--help"]
