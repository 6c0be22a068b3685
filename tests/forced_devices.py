"""Run a Python script in a subprocess that sees N simulated CPU devices (the multi-device tests)."""
import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def run_with_devices(script: str, n: int = 4, timeout: int = 600) -> str:
    """stdout of ``script`` run with ``--xla_force_host_platform_device_count=n`` on the CPU; asserts it exited 0
    and printed a line starting with OK (its last line, returned)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "OK" in p.stdout
    return p.stdout.strip().splitlines()[-1]
