"""`ddm report`: one self-contained HTML page, checked for content and, in a real browser, for loaded images."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from ddm.cli.main import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    assert main(["run", "-w", str(ws), "--preset", "tiny", "--targets", "0:1", "-q"]) == 0
    assert main(["report", "-w", str(ws), "--targets", "0:3", "--top-k", "2", "-q"]) == 0
    return ws / "report.html"


def test_the_report_is_one_self_contained_page(report):
    html = report.read_text()
    # every figure and thumbnail is embedded: no file or network reference
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html
    # 3 targets x (2 support + 2 oppose) cards, each with members and synthetic images
    assert html.count('alt="members of group') >= 3 * 4 * 1 and html.count("test #") >= 3
    for section in ("Every group, every target", "Class-level view", "Diagnosis", "Synset health", "configuration"):
        assert section in html
    assert "No diagnosis yet" not in html  # the Newton default computes it
    # a synset grown to 16 images per group (distill.ipc_grow) shows as many as the members, and says so
    ipc = int(re.search(r"(\d+) synthetic image\(s\) per group", html).group(1))
    assert ("synthetic (first 8 of 16)" in html) == (ipc == 16)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_the_report_renders_in_headless_chromium(report, tmp_path):
    exe = _chromium()
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    ok = re.search(r'data-images-ok="(\d+)"', dom)
    broken = re.search(r'data-images-broken="(\d+)"', dom)
    assert ok and broken, "the page's load script did not run"
    assert int(broken.group(1)) == 0 and int(ok.group(1)) >= 20
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.005  # text and images, not a white page


def test_the_report_names_the_groups_matched_again(tmp_path):
    ws = str(tmp_path / "ws")
    assert main(["run", "-w", ws, "--preset", "tiny", "--targets", "0:1", "-q", "--set", "distill.iterations=0",
                 "--set", "distill.retry=1e-9"]) == 0
    assert main(["report", "-w", ws, "--targets", "0:1", "-q"]) == 0
    html = (tmp_path / "ws" / "report.html").read_text()
    assert "Matched a second time from their highest-loss members" in html and "group 0 " in html


def test_a_feature_vector_is_shown_as_a_gray_strip():
    """Feature vectors (from_arrays of [N, D]) are 1x1 "images" of D channels: shown as one gray strip of D values
    (standardised, -3 to +3 from black to white), not as one pixel of their first three channels."""
    import torch

    from ddm.reporting.plots import pixels

    strip = pixels(torch.tensor([-3.0, 0.0, 1.5, 6.0])[:, None, None], (0.0,) * 4, (1.0,) * 4)
    assert strip.shape == (1, 4) and np.allclose(strip, [[0.0, 0.5, 0.75, 1.0]])
    assert pixels(torch.full((1, 3, 3), 0.5), (0.0,), (1.0,)).shape == (3, 3)  # images as before
    import base64
    import io

    from PIL import Image

    from ddm.reporting.report import _montage

    def size(uri: str) -> tuple[int, int]:
        return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size  # (width, height)

    assert size(_montage(torch.zeros(3, 4, 1, 1), (0.0,) * 4, (1.0,) * 4)) == (4, 5)  # three rows of 4, two gaps
    assert size(_montage(torch.zeros(3, 1, 5, 5), (0.0,), (1.0,))) == (17, 5)  # images side by side, as before
