"""Handing images to collaborators, without an engine: GPU flags from recorded `docker info` outputs, and the
tarball scripts' refusals (a fake `docker` on PATH records what would have been run).

The whole hand-off with a real engine (save, a clean engine, load, make all RUNNER=docker from a folder without
.venv, make bundle) runs in make test-docker (tests/e2e/test_docker.py reads what it leaves).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from ..support import REPO

INFO = REPO / "tests" / "data" / "docker-info"


@pytest.mark.parametrize(
    ("recorded", "flags"),
    [
        ("nvidia-runtime.json", ["--gpus", "all"]),  # nvidia-container-toolkit's runtime registered
        ("cdi-only.json", ["--device", "nvidia.com/gpu=all"]),  # GPUs as CDI devices only (Docker >= 28)
        ("none.json", []),  # this machine's engine: runc only
        ("no-engine.json", []),  # no engine answers: the client's empty info
    ],
)
def test_gpu_flags_from_recorded_docker_info(recorded, flags):
    from shared.containers import gpu_flags

    assert gpu_flags(json.loads((INFO / recorded).read_text())) == flags


def test_gpu_flags_on_garbage_is_no_gpu(tmp_path):
    from shared.containers import gpu_flags

    assert gpu_flags(["not", "a", "mapping"]) == [] and gpu_flags({"DiscoveredDevices": ["x"]}) == []
    fake = _fake_docker(tmp_path, info="Cannot connect\n")
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = _containers("gpu-flags", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == ""


def test_a_stage_run_takes_gpu_flags_from_the_engine_unless_overridden(tmp_path):
    """RUNNER=docker puts the detected flags in every docker run, and GPU_FLAGS=... (even empty) overrides them."""
    fake = _fake_docker(tmp_path, info=(INFO / "cdi-only.json").read_text())
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "RUNNER": "docker"}
    env.pop("GPU_FLAGS", None)
    show = ("run-stage", "--dry-run", "explain", "outputs/x/config.yaml")
    assert " --device nvidia.com/gpu=all " in _containers(*show, env=env).stdout
    assert " --gpus device=1 " in _containers(*show, env={**env, "GPU_FLAGS": "--gpus device=1"}).stdout
    printed = _containers(*show, env={**env, "GPU_FLAGS": ""}).stdout
    assert "--gpus" not in printed and "--device" not in printed


def _containers(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python3", "-m", "shared.containers", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def _fake_docker(tmp_path: Path, info: str = "{}", inspect_ok: bool = True) -> Path:
    """A `docker` that logs its arguments to calls.log and answers `info` and `image inspect`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "info.json").write_text(info)
    script = bin_dir / "docker"
    image = (
        f"img=${{@: -1}}; img=${{img#oncoxai-}}; cd {REPO} && python3 -m shared.containers source-hash ${{img//-/_}}"
        if inspect_ok
        else "exit 1"
    )
    script.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {tmp_path}/calls.log
case "$1" in
  info) cat {tmp_path}/info.json ;;
  image) {image} ;;
  *) exit 0 ;;
esac
""")
    script.chmod(0o755)
    return bin_dir


def _tarballs(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    data = os.urandom(4096)
    (folder / "oncoxai-images-0.1.0.tar").write_bytes(data)
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  oncoxai-images-0.1.0.tar\n")
    return folder


def _loads(tmp_path: Path) -> list[str]:
    """The `docker load` calls the fake docker saw."""
    log = tmp_path / "calls.log"
    return [line for line in log.read_text().splitlines() if line.startswith("load")] if log.is_file() else []


def _load(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess:
    fake = _fake_docker(tmp_path)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "load-images", f"IMAGES_DIR={folder}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_load_images_checks_the_sums_then_loads(tmp_path):
    folder = _tarballs(tmp_path)
    proc = _load(tmp_path, folder)
    assert proc.returncode == 0, proc.stderr
    assert _loads(tmp_path) == [f"load -i {folder}/oncoxai-images-0.1.0.tar"]


def test_a_corrupted_tarball_is_refused_before_anything_is_loaded(tmp_path):
    folder = _tarballs(tmp_path)
    tarball = folder / "oncoxai-images-0.1.0.tar"
    data = bytearray(tarball.read_bytes())
    data[100] ^= 0xFF
    tarball.write_bytes(bytes(data))
    proc = _load(tmp_path, folder)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "oncoxai-images-0.1.0.tar" in errors[0] and "copy it again" in errors[0]
    assert _loads(tmp_path) == [], "docker load must not run on a corrupted tarball"


def test_a_truncated_copy_and_a_missing_list_are_refused(tmp_path):
    folder = _tarballs(tmp_path)
    tarball = folder / "oncoxai-images-0.1.0.tar"
    tarball.write_bytes(tarball.read_bytes()[:1000])
    proc = _load(tmp_path, folder)
    assert proc.returncode != 0 and "corrupted or incomplete copy" in proc.stderr
    (folder / "SHA256SUMS").unlink()
    proc = _load(tmp_path, folder)
    assert proc.returncode != 0 and "SHA256SUMS: no checksum list" in proc.stderr
    assert _loads(tmp_path) == []


def test_save_images_refuses_a_missing_image_and_writes_nothing(tmp_path):
    fake = _fake_docker(tmp_path, inspect_ok=False)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = tmp_path / "dist"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "save-images", f"IMAGES_DIR={out}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "error: no image oncoxai-torch (run: make images" in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    assert "save" not in (tmp_path / "calls.log").read_text().split()
