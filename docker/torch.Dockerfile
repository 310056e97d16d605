# The shared framework image of the torch stages (train_torch, explain, train_3d_mri): a venv with the torch +
# torchvision pair of pyproject.toml's `torch` extra and the packages of every stage built on it (EXTRAS, their
# extras, which `python3 -m shared.containers images` lists), so that those are installed once, not once per image;
# the stage images then add only the project's code. The registry's torch 2.13.0 is the CUDA build: it runs on CPU
# here and uses the GPU on a workstation with the NVIDIA runtime (docker run --gpus all).
#
#   make images                      (builds this first, then the stages)
#   docker build -f docker/torch.Dockerfile --build-arg EXTRAS=train_torch,explain,train_3d_mri -t oncoxai-torch .
#
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv module. The default is public; where no
# registry is reachable, docker/base.sh makes one offline.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Build stage: pip runs here with the build host's pip settings (PIP_* build arguments, docker/build-pip/);
# only /opt/venv is copied out of it.
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=120
ARG EXTRAS=torch
WORKDIR /tmp/src
COPY docker/build-pip/ /tmp/build-pip/
COPY docker/install.py pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python install.py deps --extra "${EXTRAS}" --no-base

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
WORKDIR /app
USER 10001:10001
LABEL org.opencontainers.image.title="oncoxai-torch" \
      org.opencontainers.image.description="oncoxai: torch + torchvision (CUDA-capable build) and the packages of the torch stages, their base"
CMD ["python", "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__, 'cuda:', torch.cuda.is_available())"]
