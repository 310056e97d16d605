"""The `docker run` flags that give a container the engine's NVIDIA GPUs: ``docker info --format '{{json .}}' | python3
docker/gpu_flags.py``. The Makefile's GPU_FLAGS (RUNNER=docker) comes from here unless set.

- the NVIDIA runtime registered with the engine (nvidia-container-toolkit's classic setup, ``Runtimes`` has
  ``nvidia``): ``--gpus all``
- GPUs exposed only as CDI devices (``DiscoveredDevices`` lists ``nvidia.com/gpu=...`` from the engine's CDI spec
  directories; Docker >= 28 with CDI enabled): ``--device nvidia.com/gpu=all``
- neither (or no engine, or output that is not JSON): nothing, and the stages run on CPU

Standard library only: it runs before any Python environment exists.
"""

from __future__ import annotations

import json
import sys


def gpu_flags(info: dict) -> str:
    if "nvidia" in (info.get("Runtimes") or {}):
        return "--gpus all"
    devices = info.get("DiscoveredDevices") or []
    if any(str(d.get("ID", "")).startswith("nvidia.com/gpu") for d in devices if isinstance(d, dict)):
        return "--device nvidia.com/gpu=all"
    return ""


def main() -> int:
    try:
        info = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    print(gpu_flags(info if isinstance(info, dict) else {}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
