"""Wall time and peak memory of one command, measured from a small launcher process (stdlib only).

Why a launcher: on Linux a process's ``ru_maxrss`` survives ``exec`` and starts from the resident size of the
process that forked it. A child forked straight from the benchmark (which may hold a gigabyte or two after
writing an input file) would report the benchmark's memory, not its own. This launcher is a fresh Python
with nothing but the standard library loaded (about 10 MB), so the child it forks reports its own peak.

``python -m bench.measure RESULT.json LOG -- cmd ...`` runs ``cmd`` (stdout and stderr to LOG), samples its
``/proc/<pid>/status`` every 0.25 s (VmRSS and the kernel's high-water mark VmHWM), waits for it with
``os.wait4`` and writes {returncode, seconds, peak_rss_kb (ru_maxrss), peak_rss_sampled_kb, user_s, sys_s,
rss_timeline} to RESULT.json.

Also the in-process timers the benchmarks share: ``timed`` (one call, the garbage collector paused), ``best_of``
(the best of several calls) and ``alternate`` (two functions timed in turn).
"""

from __future__ import annotations

import gc
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


def timed(fn):
    """(seconds, result) of one call, with the garbage collector paused as timeit does (a collection is
    expensive here, with torch's module graph loaded by pyDeepInsight, and would land in a random run)."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result
    finally:
        gc.enable()


def best_of(fn, repeats: int):
    """The best of ``repeats`` timed calls; returns (best, times, last result)."""
    gc.collect()
    times, result = [], None
    for _ in range(repeats):
        t, result = timed(fn)
        times.append(t)
    return min(times), times, result


#: runs of anything that takes under SHORT_S seconds: short timings suffer most from a burst of load
SHORT_S, SHORT_REPEATS = 2.0, 7


def alternate(fn_a, fn_b, repeats: int):
    """Time two functions alternately, ``repeats`` times (``SHORT_REPEATS`` when the first round of both took
    under ``SHORT_S``); returns ((best_a, times_a, last_a), (best_b, times_b, last_b))."""
    ta, tb, ra, rb = [], [], None, None
    rounds = repeats
    gc.collect()
    while len(ta) < rounds:
        t, ra = timed(fn_a)
        ta.append(t)
        t, rb = timed(fn_b)
        tb.append(t)
        if len(ta) == 1 and max(ta[0], tb[0]) < SHORT_S:
            rounds = max(repeats, SHORT_REPEATS)
    return (min(ta), ta, ra), (min(tb), tb, rb)


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
