"""The package as a user installs it: the wheel built from this tree, installed into a
fresh virtual environment (its dependencies from PyPI), then run from there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import trio
import trio_websocket

from conftest import ROOT

import osintd

#: What never belongs in a build: environments, caches, test output, other builds.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".mypy_cache", ".ruff_cache", "artifacts")


def _run(*command: str | Path, cwd: Path, timeout: float) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` of a copy of the tree: a build in place would leave build/ behind in it."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp_path / "dist", source,
         cwd=tmp_path, timeout=120)
    [wheel] = (tmp_path / "dist").glob("osintd-*.whl")
    return wheel


async def test_the_wheel_installs_into_a_clean_venv_and_serves_the_demo(tmp_path):
    started = time.monotonic()
    wheel = await trio.to_thread.run_sync(_build_wheel, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert "osintd/static/dashboard.html" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), sorted(names)
    for label in ("Homepage", "Documentation", "Source", "Issues"):
        assert re.search(rf"^Project-URL: {label}, https://github\.com/osintd/osintd", metadata, re.M), label
    assert re.search(r"^License-Expression: MIT$", metadata, re.M)

    venv = tmp_path / "venv"
    await trio.to_thread.run_sync(lambda: _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, timeout=60))
    await trio.to_thread.run_sync(lambda: _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel,
                                               cwd=tmp_path, timeout=180))
    where = _run(venv / "bin" / "python", "-c", "import osintd; print(osintd.__file__)", cwd=tmp_path, timeout=30)
    assert where.strip().startswith(str(venv)), where  # the installed copy, not this tree
    assert _run(venv / "bin" / "osintd", "--version", cwd=tmp_path, timeout=30).strip() == f"osintd {osintd.__version__}"

    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([venv / "bin" / "osintd", "--demo", "--port", "0", "--demo-rate", "20"],
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = None
        with trio.fail_after(20):
            while port is None:
                assert process.poll() is None, log_path.read_text()
                found = re.search(r"serving ws://[^:]+:(\d+)/ws/live-updates", log_path.read_text())
                port = int(found.group(1)) if found else None
                await trio.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert b"<html" in answer.read().lower()  # the dashboard, from the wheel's static files
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/ws/live-updates") as ws:
            with trio.fail_after(10):
                assert json.loads(await ws.get_message())["type"] == "connection"
                while json.loads(await ws.get_message())["type"] != "new_event":
                    pass
    finally:
        process.terminate()
        status = process.wait(10)
    assert status == 0 and "Traceback" not in log_path.read_text()
    print(f"wheel built, installed and run in {time.monotonic() - started:.1f} s")
