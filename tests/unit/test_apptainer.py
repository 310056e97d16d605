"""shared.apptainer: the definition files made from make save-images' tarball, and the apptainer run of a stage with
the docker run's volume layout (Apptainer itself is not installable here: the command lines and files are what is
tested; docs/how-to/containers.md says so)."""

from __future__ import annotations

import shlex
from pathlib import Path

from shared import apptainer, containers
from shared.containers import Settings, images, stage_command

from ..support import REPO

REPO_DIR = Path("/home/u/oncoxai")


def _settings(**kw) -> Settings:
    return Settings(**{**dict(repo=REPO_DIR, user="1000:1000", commit="abc123"), **kw})


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_each_stage_image_gets_a_definition_naming_its_versioned_tag_in_the_archive(tmp_path):
    archive = tmp_path / "oncoxai-images-0.1.0.tar"
    defs = apptainer.definitions(archive, "0.1.0")
    stages = {im.name: im for im in images() if im.name != "torch"}
    assert set(defs) == set(stages) and "torch" not in defs  # the parent image is in the archive, not run
    for name, text in defs.items():
        lines = text.splitlines()
        assert lines[0] == "Bootstrap: docker-archive"
        # containers/image's docker-archive:PATH:REFERENCE, the tag make save-images gives every image
        assert lines[1] == f"From: {archive}:{stages[name].image}:0.1.0-{stages[name].source_hash}"
        run = lines[lines.index("%runscript") + 1 : lines.index("%runscript") + 3]
        assert run == ["    cd /app", f'    exec python -m oncoxai.stages.{name} "$@"']
        assert f"    org.oncoxai.source {stages[name].source_hash}" in lines


def test_a_stage_runs_with_the_docker_runs_volumes_and_environment():
    s = _settings(env={"OMP_NUM_THREADS": "2", "UNRELATED": "x"})
    argv = apptainer.stage_command("explain", "outputs/demo/config.yaml", s, gpu=False)
    assert argv[:5] == ["apptainer", "run", "--containall", "--cleanenv", "--no-home"] and "--nv" not in argv
    assert argv[-3:] == ["dist/sif/oncoxai-explain.sif", "--config", "outputs/demo/config.yaml"]
    # the same host folders at the same paths inside, data read-only, the outputs read-write
    docker = _pairs(stage_command("explain", "outputs/demo/config.yaml", s), "-v")
    assert _pairs(argv, "--bind") == [",".join(docker)]
    env = dict(pair.split("=", 1) for pair in _pairs(argv, "--env")[0].split(","))
    assert env == {
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "ONCOXAI_OUTPUTS": "outputs",
        "ONCOXAI_GIT_COMMIT": "abc123",
        "OMP_NUM_THREADS": "2",
    }
    assert "--nv" in apptainer.stage_command("explain", "c.yaml", s, gpu=True)


def test_an_absolute_outputs_folder_is_bound_at_its_own_path():
    argv = apptainer.stage_command("report", "c.yaml", _settings(outputs="/scratch/out"), gpu=False)
    assert _pairs(argv, "--bind") == [f"{REPO_DIR}/data:/app/data:ro,/scratch/out:/scratch/out"]
    assert "ONCOXAI_OUTPUTS=/scratch/out" in _pairs(argv, "--env")[0]


def _main(capsys, *args, **environ):
    code = containers.main(list(args), environ=environ)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_make_all_runner_apptainer_runs_the_stages_and_commands_from_the_sif_files(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    code, out, _ = _main(
        capsys, "--runner", "apptainer", "run-stage", "--dry-run", "train_3d_mri", "c.yaml", APPTAINER_GPU="1"
    )
    argv = shlex.split(out)
    assert code == 0 and argv[:2] == ["apptainer", "run"] and "--nv" in argv
    assert argv[-3:] == ["dist/sif/oncoxai-train-3d-mri.sif", "--config", "c.yaml"]
    code, out, _ = _main(
        capsys, "--runner", "apptainer", "run-stage", "--dry-run", "report", "c.yaml", APPTAINER_GPU="0"
    )
    assert code == 0 and "--nv" not in shlex.split(out)
    # without .venv the project's own commands run in the report image, in /app, the config bound there
    args = ("control", "--dry-run", "--config", "configs/demo.yaml", "shared.pipeline", "plan", "configs/demo.yaml")
    code, out, _ = _main(capsys, "--runner", "apptainer", *args, VENV=str(tmp_path / "none"), APPTAINER_GPU="0")
    argv = shlex.split(out)
    assert (
        code == 0 and _pairs(argv, "--pwd") == ["/app"] and f"{REPO}/configs/demo.yaml:/app/configs/demo.yaml:ro" in out
    )
    assert argv[-6:] == [
        "dist/sif/oncoxai-report.sif",
        "python",
        "-m",
        "oncoxai.shared.pipeline",
        "plan",
        "configs/demo.yaml",
    ]
    # a missing image: one line naming it and how to make it
    code, _, err = _main(
        capsys, "--runner", "apptainer", "run-stage", "report", "c.yaml", ONCOXAI_OUTPUTS=str(tmp_path)
    )
    assert code == 1 and err.startswith("error: dist/sif/oncoxai-report.sif: no image; build them with make sif")


def test_build_writes_the_definitions_and_says_where_apptainer_is_missing(tmp_path, capsys, monkeypatch):
    code = apptainer.main(["build", str(tmp_path / "missing.tar"), "--out", str(tmp_path / "sif")])
    assert code == 2 and "missing.tar: no such archive; run make save-images" in capsys.readouterr().err
    archive = tmp_path / "oncoxai-images-0.1.0.tar"
    archive.write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no apptainer on it
    code = apptainer.main(["build", str(archive), "--out", str(tmp_path / "sif"), "--version", "0.1.0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: apptainer not found") and len(err.strip().splitlines()) == 1
    written = sorted(p.name for p in (tmp_path / "sif").iterdir())
    assert written == sorted(f"oncoxai-{im.name.replace('_', '-')}.def" for im in images() if im.name != "torch")
