"""shared.containers: the container command lines as pure functions (settings in, argv out), the runner choice,
the images' build arguments and source hashes, and that the module runs on the standard library alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import containers
from shared.containers import ContainerError, Settings, control_command, images, stage_command

from ..support import REPO

REPO_DIR = Path("/home/u/oncoxai")


def _settings(**kw) -> Settings:
    base = dict(repo=REPO_DIR, user="1000:1000", commit="abc123")
    return Settings(**{**base, **kw})


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_a_stage_runs_as_the_user_without_network_on_a_read_only_root():
    argv = stage_command("train_torch", "outputs/demo/config.yaml", _settings())
    assert argv[:3] == ["docker", "run", "--rm"]
    assert _pairs(argv, "--network") == ["none"] and _pairs(argv, "--user") == ["1000:1000"]
    assert "--read-only" in argv and _pairs(argv, "--tmpfs") == ["/tmp:exec"] and _pairs(argv, "--shm-size") == ["2g"]
    assert argv[-3:] == ["oncoxai-train-torch", "--config", "outputs/demo/config.yaml"]


def test_data_is_mounted_read_only_and_the_outputs_read_write():
    volumes = _pairs(stage_command("preprocess", "c.yaml", _settings()), "-v")
    assert volumes == [f"{REPO_DIR}/data:/app/data:ro", f"{REPO_DIR}/outputs:/app/outputs"]


@pytest.mark.parametrize(
    ("outputs", "volume", "inside"),
    [
        ("outputs", f"{REPO_DIR}/outputs:/app/outputs", "outputs"),
        ("./outputs/", f"{REPO_DIR}/outputs:/app/outputs", "outputs"),
        ("runs/today", f"{REPO_DIR}/runs/today:/app/runs/today", "runs/today"),
        ("/scratch/out/", "/scratch/out:/scratch/out", "/scratch/out"),  # absolute: the same path inside
    ],
)
def test_the_outputs_folder_relative_or_absolute(outputs, volume, inside):
    argv = stage_command("report", "c.yaml", _settings(outputs=outputs))
    assert _pairs(argv, "-v")[1] == volume
    assert f"ONCOXAI_OUTPUTS={inside}" in _pairs(argv, "-e")


def test_an_outputs_folder_outside_the_tree_must_be_absolute():
    with pytest.raises(ContainerError, match="absolute path"):
        stage_command("report", "c.yaml", _settings(outputs="../elsewhere"))


def test_the_commit_is_passed_and_settings_only_when_set():
    s = _settings(env={"OMP_NUM_THREADS": "2", "ONCOXAI_PROGRESS": "0", "UNRELATED": "1"})
    env = _pairs(stage_command("explain", "c.yaml", s), "-e")
    assert env == ["ONCOXAI_OUTPUTS=outputs", "ONCOXAI_GIT_COMMIT=abc123", "ONCOXAI_PROGRESS", "OMP_NUM_THREADS"]
    env = _pairs(stage_command("explain", "c.yaml", _settings(env={})), "-e")
    assert env == ["ONCOXAI_OUTPUTS=outputs", "ONCOXAI_GIT_COMMIT=abc123"]
    s = _settings(env={"OMP_NUM_THREADS": "2", "FOO": "x"}, pass_env=("FOO",))  # DOCKER_PASS_ENV replaces the list
    assert _pairs(stage_command("explain", "c.yaml", s), "-e")[2:] == ["FOO"]


def test_gpu_flags_run_flags_and_the_torch_checkpoints():
    s = _settings(
        gpu_flags=("--gpus", "all"),
        run_flags=("--cpus", "2"),
        shm_size="8g",
        torch_checkpoints=Path("/home/u/.cache/torch/hub/checkpoints"),
    )
    argv = stage_command("train_torch", "c.yaml", s)
    assert argv[argv.index("--gpus") + 1] == "all" and argv.index("--gpus") < argv.index("--read-only")
    assert _pairs(argv, "--cpus") == ["2"] and _pairs(argv, "--shm-size") == ["8g"]
    assert _pairs(argv, "-v")[-1] == "/home/u/.cache/torch/hub/checkpoints:/opt/torch/hub/checkpoints:ro"
    assert "--gpus" not in stage_command("train_torch", "c.yaml", _settings())


def test_settings_from_the_environment(tmp_path):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    env = {
        "DOCKER_USER": "4242:4242",
        "GPU_FLAGS": "--gpus device=1",
        "DOCKER_RUN_FLAGS": "--cpus 2",
        "DOCKER_SHM_SIZE": "4g",
        "TORCH_HOME": str(tmp_path / "torch"),
        "IMAGE_PREFIX": "mine",
        "ONCOXAI_OUTPUTS": "/abs/out",
    }
    s = Settings.from_env(env, REPO_DIR)
    assert (s.user, s.gpu_flags, s.run_flags, s.shm_size, s.prefix, s.outputs) == (
        "4242:4242",
        ("--gpus", "device=1"),
        ("--cpus", "2"),
        "4g",
        "mine",
        "/abs/out",
    )
    assert s.torch_checkpoints == checkpoints and s.pass_env == containers.PASS_ENV
    s = Settings.from_env({"HOME": str(tmp_path / "nobody"), "GPU_FLAGS": ""}, REPO_DIR)
    assert s.gpu_flags == () and s.torch_checkpoints is None and s.outputs == "outputs" and s.prefix == "oncoxai"
    assert s.user.count(":") == 1 and s.commit  # the caller's uid:gid; the commit string of shared.sources
    from shared.artifacts import git_commit

    assert s.commit == git_commit()


@pytest.mark.parametrize(
    ("config", "mount"),
    [
        ("configs/demo.yaml", "configs/demo.yaml:/app/configs/demo.yaml:ro"),
        ("./configs/demo.yaml", "configs/demo.yaml:/app/configs/demo.yaml:ro"),
        (None, None),
    ],
)
def test_control_runs_python_in_the_report_image_with_the_config_mounted(tmp_path, config, mount):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("name: demo\n")
    argv = control_command(["shared.pipeline", "plan", "configs/demo.yaml"], _settings(repo=tmp_path), config)
    assert _pairs(argv, "--network") == ["none"] and "--read-only" in argv and _pairs(argv, "--tmpfs") == ["/tmp"]
    assert argv[argv.index("--entrypoint") :] == [
        "--entrypoint",
        "python",
        "oncoxai-report",
        "-m",
        "oncoxai.shared.pipeline",  # installed in the image inside the package oncoxai (setup.py)
        "plan",
        "configs/demo.yaml",
    ]
    volumes = _pairs(argv, "-v")
    assert volumes[:2] == [f"{tmp_path}/data:/app/data:ro", f"{tmp_path}/outputs:/app/outputs"]
    assert volumes[2:] == ([f"{tmp_path}/{mount}"] if mount else [])


def test_an_absolute_config_is_mounted_at_its_path_and_a_missing_one_not_at_all(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("name: x\n")
    s = _settings(repo=tmp_path)
    assert _pairs(control_command(["m"], s, str(config)), "-v")[-1] == f"{config}:{config}:ro"
    assert len(_pairs(control_command(["m"], s, str(tmp_path / "missing.yaml")), "-v")) == 2  # never a folder


def _main(capsys, *args, **environ) -> tuple[int, str, str]:
    code = containers.main(list(args), environ=environ)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_runner_is_local_unless_docker_is_asked_for(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = _main(capsys, "run-stage", "--dry-run", "report", "outputs/d/config.yaml")
    assert code == 0 and out.strip() == f"{REPO}/.venv/bin/python -m stages.report --config outputs/d/config.yaml"
    code, out, _ = _main(capsys, "run-stage", "--dry-run", "report", "c.yaml", RUNNER="docker", GPU_FLAGS="")
    assert code == 0 and out.startswith("docker run --rm --network none ") and "oncoxai-report --config c.yaml" in out
    code, _, err = _main(capsys, "run-stage", "--dry-run", "report", "c.yaml", RUNNER="podman")
    assert code == 1 and err.strip() == "error: RUNNER must be local, docker or apptainer, not 'podman'"
    code, out, _ = _main(capsys, "--runner", "docker", "run-stage", "--dry-run", "report", "c.yaml", GPU_FLAGS="")
    assert code == 0 and out.startswith("docker run ")  # make passes its RUNNER as --runner
    code, out, _ = _main(capsys, "--runner", "local", "run-stage", "--dry-run", "report", "c.yaml", RUNNER="docker")
    assert code == 0 and out.startswith(f"{REPO}/.venv/bin/python -m stages.report")


def test_control_uses_the_venv_when_there_is_one_even_with_docker(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    code, out, _ = _main(capsys, "control", "--dry-run", "stages.report.experiments", RUNNER="docker", VENV=".venv")
    assert code == 0 and out.strip() == f"{REPO}/.venv/bin/python -m stages.report.experiments"
    args = ("control", "--dry-run", "--config", "configs/demo.yaml", "shared.pipeline", "plan", "configs/demo.yaml")
    code, out, _ = _main(capsys, *args, "--set", "a=1", RUNNER="docker", VENV=str(tmp_path / "none"))
    assert (
        code == 0
        and out.startswith("docker run ")
        and "--entrypoint python oncoxai-report -m oncoxai.shared.pipeline" in out
    )
    assert out.rstrip().endswith("plan configs/demo.yaml --set a=1")
    assert f"-v {REPO}/configs/demo.yaml:/app/configs/demo.yaml:ro" in out


def test_every_stage_has_an_image_from_the_template_the_torch_stages_on_the_torch_image():
    from shared.config import discover_stages

    built = images("oncoxai")
    assert built[0].name == "torch" and built[0].dockerfile == "docker/torch.Dockerfile"
    stages = {im.name: im for im in built[1:]}
    assert set(stages) == set(discover_stages())
    for name, im in stages.items():
        assert im.dockerfile == "docker/stage.Dockerfile" and im.image == f"oncoxai-{name.replace('_', '-')}"
        args = dict(a.split("=", 1) for a in im.build_args)
        assert args["STAGE"] == name and args["EXTRA"] == name and args["IMAGE_NAME"] == im.image
        assert (args.get("PARENT") == "oncoxai-torch") == (im.parent == "torch")
    assert {n for n, im in stages.items() if im.parent == "torch"} == {"train_torch", "explain", "train_3d_mri"}
    # the torch image holds the packages of every stage on it, installed once (their images add only the code)
    assert built[0].build_args == ("EXTRAS=explain,train_3d_mri,train_torch",)
    assert len({im.source_hash for im in built}) == len(built) and all(len(im.source_hash) == 16 for im in built)


def test_the_extras_read_without_tomllib_as_with_it():
    text = (REPO / "pyproject.toml").read_text()
    for extra in ("torch", "preprocess", "train_torch", "train_tf_gradcam", "report", "all", "missing"):
        assert containers._extra_requirements_plain(text, extra) == containers.extra_requirements(text, extra)


def test_the_module_imports_nothing_but_the_standard_library():
    """A collaborator without .venv runs it with the system python3: shared/__init__ must stay light."""
    code = (
        "import sys; before = set(sys.modules); import shared.containers, shared.apptainer; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'shared'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout.replace("'", '"')) == [], proc.stdout + proc.stderr


def test_make_picks_no_runner_by_itself(tmp_path):
    """RUNNER is local whatever images exist: a docker that has every image changes nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "docker").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-p", "-q", "help"], env=env, capture_output=True, text=True
    )
    assert "\nRUNNER = local\n" in proc.stdout or "\nRUNNER := local\n" in proc.stdout
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "help", "RUNNER=auto"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "RUNNER must be local, docker or apptainer, not 'auto'" in proc.stderr


# -- what the container check depends on (.ci/run runs it when these change) -------------------------------------
#: imports that a stage's sources hold but its image does not install, each never run by that stage
NOT_RUN_THERE = {
    ("*", "shared/seeding.py", "torch"): "seeds torch only when the stage has imported it",
    ("*", "shared/seeding.py", "tensorflow"): "seeds TensorFlow only when the stage has imported it",
    ("report", "shared/evaluation/shortcuts.py", "sklearn"): "report renders the audit (table_rows); the folds "
    "that need scikit-learn are cut in explain, whose image has it",
}


def _installed_closure(requirements: list[str], pyproject: str) -> set[str]:
    """The distributions pip installs for these requirements (this environment's metadata, no extras of theirs)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name == "oncoxai":
            todo += [r for extra in req.extras for r in containers.extra_requirements(pyproject, extra)]
        elif name not in seen:
            seen.add(name)
            todo += metadata.distribution(name).requires or []
    return seen


def _third_party_imports(paths: list[Path]) -> set[tuple[str, str]]:
    """(file relative to the repository, top-level module) of every import in these files that is neither the
    standard library's nor the project's."""
    from shared import sources

    found = set()
    for path in paths:
        if path.suffix != ".py":
            continue
        rel = path.relative_to(REPO)
        for name in sources._imports(path, ".".join(rel.with_suffix("").parts)):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in sources.OWN_PACKAGES and top != "__future__":
                found.add((rel.as_posix(), top))
    return found


def _loaded_on_import(modules: list[str]) -> set[tuple[str, str]]:
    """(file, top-level module) of the third-party imports that importing ``modules`` runs: the imports at module
    level (not in a function) of the repository files reached through module-level imports."""
    import ast

    from shared import sources

    found: set[tuple[str, str]] = set()
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            path = sources.module_file(sub)
            if path is None or sub in seen:
                continue
            seen.add(sub)
            module_level = ast.Module(body=_module_level(ast.parse(path.read_text()).body), type_ignores=[])
            for n in sources.imported_names(module_level, path, sub):
                top = n.split(".")[0]
                if top in sources.OWN_PACKAGES:
                    todo.append(n)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add((path.relative_to(REPO).as_posix(), top))
    return found


def _module_level(body: list) -> list:
    """The statements of a module body that run on import, functions' and classes' method bodies left out."""
    import ast

    out = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.ClassDef):
            out += _module_level([n for n in node.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))])
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out += _module_level(node.orelse)  # annotations only: never runs
        else:
            out.append(node)  # conditional imports at module level included: one branch or the other runs
    return out


def test_every_import_a_stage_runs_is_installed_in_its_image():
    """The container-only failure of a code change: a stage (or a shared module it imports, lazily too) importing
    a package its image's extras do not install. Checked for every import in the files each image runs: the
    stage's sources (shared.sources, the files its image is built from), every stage's params.py and what it imports
    (shared.config's discover_stages imports them all in every image), and for the report image the project's
    commands make runs in it without a .venv (CONTROL: planning, bundles, the index page)."""
    tomllib = pytest.importorskip("tomllib")
    from importlib import metadata

    from packaging.utils import canonicalize_name

    from shared import sources

    pyproject = (REPO / "pyproject.toml").read_text()
    base = tomllib.loads(pyproject)["project"]["dependencies"]
    provides = metadata.packages_distributions()
    on_torch = containers.torch_stages()
    stages = containers.stage_names()
    declarations = _loaded_on_import([f"stages.{s}.params" for s in stages])
    control = sources.closure(["shared.pipeline", "shared.bundle", "stages.report.experiments"])
    missing = []
    for stage in stages:
        extras = on_torch if stage in on_torch else [stage]  # the torch image installs every torch stage's extra
        have = _installed_closure(
            base + [r for e in extras for r in containers.extra_requirements(pyproject, e)], pyproject
        )
        runs = set(sources.stage_sources(stage))
        if stage == containers.CONTROL_STAGE:
            runs |= set(control)
        for rel, top in _third_party_imports(sorted(runs)) | declarations:
            if {(stage, rel, top), ("*", rel, top)} & NOT_RUN_THERE.keys():
                continue
            if not any(canonicalize_name(d) in have for d in provides.get(top, [top])):
                missing.append(f"{stage}: {rel} imports {top}")
    assert not missing, sorted(set(missing))
    assert "scikit-learn" not in _installed_closure(containers.extra_requirements(pyproject, "report"), pyproject)
    assert {"shared/pipeline.py", "stages/report/experiments.py"} <= {p.relative_to(REPO).as_posix() for p in control}


def test_the_container_check_inputs_exist():
    """Each entry of CHECK_INPUTS is a file or folder here: a renamed one would silently leave the check's inputs."""
    assert all((REPO / entry).exists() for entry in containers.CHECK_INPUTS), containers.CHECK_INPUTS


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=30)


def test_the_container_check_runs_when_its_inputs_change_and_not_for_a_stage_change(tmp_path):
    repo = tmp_path / "repo"
    for name, text in {
        "docker/stage.Dockerfile": "FROM base\n",
        "pyproject.toml": "[project]\n",
        "stages/explain/__main__.py": "print(1)\n",
        "notes.txt": "x\n",
    }.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    record = repo / ".ci" / "containers-checked.json"
    assert containers.check_reasons(record, repo) == ([f"no record of a passed check in {record}"], {})
    record.parent.mkdir()
    record.write_text("{not json")
    assert containers.check_reasons(record, repo)[1] == {}  # unreadable: the check runs
    inputs = containers.check_inputs(repo)
    assert set(inputs) == {"docker/stage.Dockerfile", "pyproject.toml"}
    containers.write_record(record, inputs, seconds=12, repo=repo)
    written = json.loads(record.read_text())
    assert written["test_docker_s"] == 12 and written["files"] == inputs
    assert containers.check_reasons(record, repo)[0] == []
    (repo / "stages/explain/__main__.py").write_text("print(2)\n")  # the stages' code: not an input
    (repo / "notes.txt").write_text("y\n")
    assert containers.check_reasons(record, repo)[0] == []
    assert containers.check_reasons(record, repo, now={})[0] != []  # no input found: the check runs
    old = {**written, "date": "2020-01-01"}
    record.write_text(json.dumps(old))
    assert containers.check_reasons(record, repo)[0] == [
        f"the last check passed on 2020-01-01, {containers.MAX_AGE_DAYS} or more days ago"
    ]
    record.write_text(json.dumps({**written, "files": {}}))
    assert containers.check_reasons(record, repo)[1] == {}  # a record of no file: the check runs
    record.write_text(json.dumps(written))
    (repo / "docker/stage.Dockerfile").write_text("FROM other\n")
    (repo / "docker/new.sh").write_text("true\n")
    (repo / "docker/untracked.log").write_text("")  # not in git: not an input
    _git(repo, "add", "docker/new.sh")
    reasons = containers.check_reasons(record, repo)[0]
    assert len(reasons) == 1 and reasons[0].startswith("docker/new.sh, docker/stage.Dockerfile changed since"), reasons

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "shared.containers", "check-inputs", *args],
            cwd=repo,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    saved = tmp_path / "inputs.json"
    proc = cli("--save", str(saved))
    assert proc.returncode == 1 and "docker/new.sh, docker/stage.Dockerfile changed since" in proc.stdout, proc
    assert json.loads(saved.read_text()) == containers.check_inputs(repo)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # changed while the check ran: not recorded
    proc = cli("--write", "--from", str(saved), "--seconds", "30")
    assert proc.returncode == 1 and "changed while it ran" in proc.stderr and json.loads(record.read_text()) == written
    assert cli("--save", str(saved)).returncode == 1
    assert cli("--write", "--from", str(saved), "--seconds", "30").returncode == 0
    proc = cli()
    assert proc.returncode == 0 and "are those of the check that passed at" in proc.stdout, proc
    assert json.loads(record.read_text())["test_docker_s"] == 30
    assert not list(record.parent.glob("*.tmp"))
