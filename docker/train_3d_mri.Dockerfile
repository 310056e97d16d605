# Stage image: python -m stages.train_3d_mri, on the shared torch image (docker/torch.Dockerfile, built first by
# make images) plus only the other dependencies of pyproject.toml's `train_3d_mri` extra (MONAI, TorchIO, nibabel,
# Captum), pinned to the whole project's resolution so that a container gives the same result as the local .venv.
#
#   make images                      (builds every stage image; docs/how-to/containers.md)
#   docker run --rm --network none --user "$(id -u):$(id -g)" --gpus all -v "$PWD/data:/app/data:ro" \
#     -v "$PWD/outputs:/app/outputs" oncoxai-train-3d-mri --config outputs/<experiment>/config.yaml
ARG TORCH_IMAGE=oncoxai-torch:latest

# Build stage: pip runs here with the build host's pip settings (PIP_* build arguments, docker/build-pip/);
# only what it adds (/tmp/deps, /tmp/code-install: it runs as the image's non-root user) is copied out of it,
# onto the torch image's venv.
FROM ${TORCH_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=120
WORKDIR /tmp/src
COPY docker/build-pip/ /tmp/build-pip/
COPY docker/install.py pyproject.toml constraints.txt ./
RUN python install.py deps --extra train_3d_mri --prefix /tmp/deps \
 && python install.py backend
COPY pyproject.toml README.md /tmp/code/
COPY shared/ /tmp/code/shared/
COPY stages/ /tmp/code/stages/
RUN python install.py code /tmp/code --prefix /tmp/code-install

FROM ${TORCH_IMAGE}
# MONAI asks for the user's name on import (getpass.getuser()), which fails for a uid without a passwd entry (make
# runs containers as the calling user); getuser() reads USER first.
ENV USER=oncoxai \
    LOGNAME=oncoxai
COPY --from=build /tmp/deps/ /opt/venv/
COPY --from=build /tmp/code-install/ /opt/venv/
# data/ and outputs/ are mounted here; configs name their files relative to it.
WORKDIR /app
USER 10001:10001
LABEL org.opencontainers.image.title="oncoxai-train-3d-mri" \
      org.opencontainers.image.description="oncoxai stage train_3d_mri: python -m stages.train_3d_mri --config FILE"
ENTRYPOINT ["python", "-m", "stages.train_3d_mri"]
CMD ["--help"]
