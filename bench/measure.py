"""Wall time and peak memory of one command, measured from a small launcher process (stdlib only).

Why a launcher: on Linux a process's ``ru_maxrss`` survives ``exec`` and starts from the resident size of the
process that forked it. A child forked straight from the benchmark (which may hold a gigabyte or two after
writing an input file) would report the benchmark's memory, not its own. This launcher is a fresh Python
with nothing but the standard library loaded (about 10 MB), so the child it forks reports its own peak.

``python -m bench.measure RESULT.json LOG -- cmd ...`` runs ``cmd`` (stdout and stderr to LOG), samples its
``/proc/<pid>/status`` every 0.25 s (VmRSS and the kernel's high-water mark VmHWM), waits for it with
``os.wait4`` and writes {returncode, seconds, peak_rss_kb (ru_maxrss), peak_rss_sampled_kb, user_s, sys_s,
rss_timeline} to RESULT.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()
        self._t0 = time.perf_counter()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            rss = re.search(r"VmRSS:\s+(\d+) kB", text)
            hwm = re.search(r"VmHWM:\s+(\d+) kB", text)
            if rss:
                self.samples.append((round(time.perf_counter() - self._t0, 2), int(rss.group(1))))
                self.peak_kb = max(self.peak_kb, int(rss.group(1)))
            if hwm:
                self.peak_kb = max(self.peak_kb, int(hwm.group(1)))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()


def _launch(result_path: str, log_path: str, cmd: list[str]) -> int:
    with open(log_path, "w") as log_fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT)
        sampler = RssSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join(timeout=2)
    Path(result_path).write_text(
        json.dumps(
            {
                "returncode": proc.returncode,
                "seconds": seconds,
                "peak_rss_kb": usage.ru_maxrss,
                "peak_rss_sampled_kb": sampler.peak_kb,
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "rss_timeline_kb": sampler.samples,
            }
        )
    )
    return 0


def measure(cmd: list[str], log_path: Path, cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run ``cmd`` under the launcher; returns the launcher's result (see the module docstring)."""
    result = Path(log_path).with_suffix(".measure.json")
    launcher = [sys.executable, "-m", "bench.measure", str(result), str(log_path), "--", *cmd]
    bench_root = str(Path(__file__).resolve().parent.parent)
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), bench_root) if p)
    subprocess.run(launcher, cwd=cwd, env=env, check=True)
    return json.loads(result.read_text())


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: python -m bench.measure RESULT.json LOG -- cmd ...", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_launch(sys.argv[1], sys.argv[2], sys.argv[4:]))
