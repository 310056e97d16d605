"""A single-node SLURM cluster in a temporary folder, for tests/e2e/test_slurm.py (and by hand:
``python -m tests.slurm FOLDER`` starts one and waits; Ctrl-C stops it).

Debian's packages (``apt-get install slurm-wlm munge``) give the daemons; everything else is written under the
folder: a munge key and munged's socket, ``slurm.conf`` (this machine as its one node, as ``slurmd -C`` sees it;
free ports; no cgroups: ``proctrack/linuxproc``, ``task/none``; no accounting database), the daemons' state, spool,
logs and pid files. The daemons run in the foreground as this process's children, with ``SLURM_CONF`` pointing at
that ``slurm.conf``; ``stop`` cancels every job, ends what the job steps left (the processes whose environment names
this ``SLURM_CONF``) and the daemons, and leaves no process behind.

Inside a job, Snakemake's job step (``snakemake-executor-plugin-slurm-jobstep``) starts the rule with ``srun`` after
dropping every ``SLURM_*`` variable but the job's identity, ``SLURM_CONF`` included, so that ``srun`` would look for
``/etc/slurm/slurm.conf`` (or a DNS record) and fail; a real cluster has its configuration there, this one must not
touch the machine's. So ``bin/srun`` in the folder, first on the jobs' ``PATH``, sets ``SLURM_CONF`` and runs the
real ``srun``.

No accounting: ``sacct`` answers nothing without slurmdbd, so Snakemake's SLURM executor is told to poll ``squeue``
(``--slurm-status-command squeue``), which keeps a finished job for ``MinJobAge`` (300 s here), far longer than the
executor's polling interval (see ``snakemake_args``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot start here (a binary missing, a daemon that does not come up); the message says which."""


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if which(name) is None]


def _epoch(stamp: str) -> int:
    """squeue's time (``2024-01-31T12:00:00``, local time) as epoch seconds; 0 for none (``N/A``, ``Unknown``)."""
    try:
        return int(datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One node (this machine, under its short host name), one partition ``debug``, jobs run as this user."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.conf = self.folder / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.cpus = 0  # the node's CPUs, once configured
        self.bin = self.folder / "bin"
        path = os.pathsep.join([str(self.bin), os.environ.get("PATH", "")])
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    # -- configuration -------------------------------------------------------------------------------------------
    def node_line(self) -> str:
        """This machine as ``slurmd -C`` describes it (CPUs, sockets, cores, threads, RealMemory)."""
        proc = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, timeout=30)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NodeName=")), None)
        if proc.returncode != 0 or line is None:
            raise SlurmUnavailable(f"slurmd -C failed: {proc.stdout[-500:]}{proc.stderr[-500:]}")
        fields = [f for f in line.split() if not f.startswith("NodeName=")]
        self.cpus = int(next((f.split("=")[1] for f in fields if f.startswith("CPUs=")), "0"))
        return " ".join([f"NodeName={self.node}", "NodeAddr=127.0.0.1", *fields, "State=UNKNOWN"])

    def write_config(self) -> None:
        f = self.folder
        for sub in ("state", "spool", "log", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        lines = [
            "# written by tests/slurm.py: a single-node test cluster",
            "ClusterName=oncoxai-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # no cgroups: a container or a CI runner rarely lets a test mount or delegate them
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            # squeue keeps a finished job this long: Snakemake's executor reads its end state from there
            "MinJobAge=300",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "KillWait=5",
            self.node_line(),
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        # srun for the jobs' nested steps, which lose SLURM_CONF (see the module's docstring)
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{which("srun")}" "$@"\n')
        srun.chmod(0o755)

    # -- daemons -------------------------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.folder / "log" / f"{name}.out", "ab")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()

    def log_tail(self, name: str | None = None, n: int = 1500) -> str:
        """The end of a daemon's logs (every daemon's without a name), for a failing test's message."""
        names = [name] if name else ["munged", "slurmctld", "slurmd"]
        text = ""
        for path in [self.folder / "log" / f"{n_}.{ext}" for n_ in names for ext in ("out", "log")]:
            if path.exists():
                text += f"\n--- {path.name}:\n" + path.read_text(errors="replace")[-n:]
        return text

    def start(self, timeout: float = 60) -> Cluster:
        missing = missing_binaries()
        if missing:
            raise SlurmUnavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write_config()
        m = self.folder / "munge"
        os.chmod(m, 0o700)
        key = m / "munge.key"
        proc = subprocess.run([which("mungekey"), "--create", f"--keyfile={key}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"mungekey failed: {proc.stderr[-500:]}")
        self._start(
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                f"--socket={m / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={self.folder / 'log' / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
        )
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged")
        self._start("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), timeout, "slurmctld")
        self._start("slurmd", [which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self._ok(["sinfo", "-h", "-N", "-o", "%T"], "idle"), timeout, "slurmd")
        return self

    def _ok(self, argv: list[str], want: str) -> bool:
        try:
            out = subprocess.run(
                [which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True, timeout=15
            ).stdout
        except subprocess.TimeoutExpired:
            return False
        return want in out

    def _wait(self, ready, timeout: float, name: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                self.stop()
                raise SlurmUnavailable(f"{', '.join(dead)} exited while starting {name}:{self.log_tail(dead[0])}")
            if ready():
                return
            time.sleep(0.3)
        tail = self.log_tail(name)
        self.stop()
        raise SlurmUnavailable(f"{name} not ready after {timeout:.0f} s:{tail}")

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster (``squeue``, ``scancel``, ...)."""
        return subprocess.run([which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True, **kwargs)

    def jobs(self, times: bool = False) -> list[dict]:
        """Every job slurmctld still holds (for ``MinJobAge`` after its end): id, state and comment (Snakemake's
        executor writes ``rule_<rule>`` there); with ``times``, its start and end as epoch seconds."""
        out = self.run("squeue", "-h", "--states=all", "-o", "%i|%T|%S|%e|%k", timeout=30).stdout
        found = []
        for line in out.splitlines():
            parts = line.split("|", 4)
            if len(parts) < 5:
                continue
            job = {"id": parts[0], "state": parts[1], "comment": parts[4]}
            if times:
                job["start"], job["end"] = (_epoch(t) for t in parts[2:4])
            found.append(job)
        return found

    def _strays(self) -> list[int]:
        """Processes (job steps, their children) started under this cluster: those whose environment holds its
        SLURM_CONF, other than the daemons."""
        mark = f"SLURM_CONF={self.conf}".encode()
        own = {p.pid for p in self.procs.values()} | {os.getpid()}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in own:
                continue
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """Cancel every job, end the job steps' processes and the daemons (TERM, then KILL)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--partition=debug", timeout=30)
            end = time.monotonic() + 20
            while time.monotonic() < end and any(
                j["state"] in ("RUNNING", "PENDING", "COMPLETING") for j in self.jobs()
            ):
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for _ in range(3):
            strays = self._strays()
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        self.procs.clear()

    def snakemake_args(self, logdir: Path) -> list[str]:
        """Snakemake's options for this cluster: the SLURM executor, polling ``squeue`` every few seconds (the
        executor's default first wait is 40 s), no account (there is no accounting database to check one in), the
        SLURM logs kept under ``logdir``."""
        return [
            "--executor",
            "slurm",
            "--jobs",
            "8",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-no-account",
            "--slurm-logdir",
            str(logdir),
            "--slurm-keep-successful-logs",
            "--latency-wait",
            "5",
        ]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m tests.slurm FOLDER", file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[0]))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"export SLURM_CONF={cluster.conf}  # Ctrl-C stops the cluster", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
