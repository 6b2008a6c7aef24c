"""End to end: a real TensorBoard server reads what TensorBoardSink wrote."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from layerscope.sinks.tensorboard import TensorBoardSink
from sink_records import make_records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path):
    sink = TensorBoardSink(tmp_path / "run1")
    sink.write(make_records())
    sink.close()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast=false",
        "--reload_interval",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()


def wait_for(base, process, path, ready, timeout=60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tensorboard exited with {process.returncode}: {process.stderr.read()!r}")
        try:
            last = get_json(base + path)
            if ready(last):
                return last
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"tensorboard did not serve {path} within {timeout}s; last answer {last!r}")


@pytest.mark.slow
def test_server_lists_our_scalars_and_layout(server):
    base, process = server
    tags = wait_for(base, process, "/data/plugin/scalars/tags", lambda t: "run1" in t)["run1"]
    assert "loss" in tags
    assert tags["model.fc1/output.mean"]["description"] == (
        '<p>layerscope record (tag, site, quantity, statistic): ["activations", "fc1:output", '
        '"value", "mean"]</p>'
    )
    layout = wait_for(base, process, "/data/plugin/custom_scalars/layout", bool)
    assert [c["title"] for c in layout["category"]] == ["activations"]
    charts = layout["category"][0]["chart"]
    assert charts[0]["margin"]["series"][0]["value"] == "model.fc1/output.median"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_browser_screenshot_of_scalars_page(server, tmp_path):
    base, process = server
    wait_for(base, process, "/data/plugin/scalars/tags", lambda t: "run1" in t)
    shot = tmp_path / "scalars.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            "--virtual-time-budget=15000",
            f"--screenshot={shot}",
            f"{base}/#scalars",
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.std() > 0.01  # not a blank page
