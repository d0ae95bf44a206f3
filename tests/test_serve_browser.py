"""The live page in a real browser: Debian's headless Chromium, driven by Playwright (which is never
allowed to download a browser of its own), on ``cli.py webcam --serve`` running a real model.

Set WSCNET_SCREENSHOT=path.png to also save a screenshot of the whole page there (docs/live-view.png).
"""

import json
import os
import shutil
import signal
from collections import Counter

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it", allow_module_level=True
    )
pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")

from runtime_fixtures import read_all, read_jsonl, write_video  # noqa: E402
from serve_helpers import decode, get, start_webcam, wait_for  # noqa: E402

from runtime.serve.hub import JPEG_QUALITY  # noqa: E402

TOKEN = "browser-token"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIZE = (320, 240)
# the overlay's label box (top left) and readout (bottom) cover the rest: compare pictures here
PICTURE = (slice(0, 200), slice(130, 320))

READ_PAGE = """() => {
  const label = document.getElementById('label');
  const canvas = document.getElementById('timeline');
  const [x0, y0, x1, y1] = canvas.dataset.plot.split(',').map(Number);
  const column = canvas.getContext('2d').getImageData(Math.round(x1) - 4, 0, 5, canvas.height).data;
  const bars = [...document.querySelectorAll('.bar-row')].map(
      (row) => ({name: row.dataset.class, p: Number(row.dataset.p), top: row.classList.contains('top'),
                 width: row.querySelector('.fill').style.width}));
  return {label: label.textContent, index: Number(label.dataset.index), bars,
          chart: {index: Number(canvas.dataset.index), label: canvas.dataset.label, colour: canvas.dataset.colour,
                  plot: [x0, y0, x1, y1], column: Array.from(column)}};
}"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from runtime_fixtures import exported_model

    return exported_model(tmp_path_factory)


def video_picture(page) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(page.locator("#video").screenshot(), np.uint8), cv2.IMREAD_COLOR)


def snapshot_after(url: str, index: int) -> tuple[int, np.ndarray]:
    """The first /snapshot.jpg of a frame after ``index``: (its index, the picture)."""

    def newer():
        status, headers, jpeg = get(url + f"snapshot.jpg?token={TOKEN}")
        return status == 200 and int(headers["x-frame-index"]) > index and (int(headers["x-frame-index"]), jpeg)

    shown, jpeg = wait_for(newer, timeout=20)
    return shown, decode(jpeg)


def picture_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a[PICTURE].astype(np.int16) - b[PICTURE]).mean())


def check_chart(chart: dict, records: dict) -> None:
    """The chart's newest point is the shown frame's: its label, drawn at that label's probability."""
    record = records[chart["index"]]
    assert chart["label"] == record["label"]
    x0, y0, x1, y1 = chart["plot"]
    expected_y = y1 - record["probabilities"][record["label"]] * (y1 - y0)
    colour = np.array([int(chart["colour"][i : i + 2], 16) for i in (1, 3, 5)])
    column = np.array(chart["column"]).reshape(-1, 5, 4)[..., :3]  # rows × 5 px × RGB
    rows = np.where((np.abs(column - colour).sum(-1) < 60).any(axis=1))[0]
    assert len(rows) and np.abs(rows - expected_y).min() <= 4, (rows, expected_y)


def test_page_in_headless_chromium(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", 300, fps=15.0, size=SIZE)  # 20 s at --realtime
    source = read_all(video)
    proc, url = start_webcam(model, video, tmp_path, TOKEN, "--realtime", "--opacity", "0.8")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 900},
            )
            page = browser.new_page()
            assert page.goto(url + "?token=wrong").status == 401
            page.goto(url + f"?token={TOKEN}")
            # polled from here: the page's CSP forbids the eval that wait_for_function would need
            wait_for(
                lambda: page.evaluate("() => document.getElementById('timeline').dataset.index !== undefined"),
                timeout=30,
            )
            first = video_picture(page)
            page.wait_for_timeout(1000)
            second = video_picture(page)
            shown = page.evaluate(READ_PAGE)
            if os.environ.get("WSCNET_SCREENSHOT"):
                page.screenshot(path=os.environ["WSCNET_SCREENSHOT"], full_page=True)

            index_on, with_map = snapshot_after(url, shown["index"])
            page.uncheck("#map")  # the page's control → POST /controls → the render thread's next frame
            wait_for(lambda: get(url + f"controls?token={TOKEN}")[2].endswith(b'"map": false}'))
            index_off, without_map = snapshot_after(url, index_on + 4)  # past the frames in flight
            browser.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert first.shape == second.shape and np.abs(first.astype(np.int16) - second).mean() > 1, "the video moves"
    records = {r["index"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    record = records[shown["index"]]
    assert shown["label"] == record["label"]
    assert [b["name"] for b in shown["bars"] if b["top"]] == [record["label"]]
    for bar in shown["bars"]:
        assert bar["p"] == pytest.approx(record["probabilities"][bar["name"]], abs=1e-6)
        assert float(bar["width"].rstrip("%")) == pytest.approx(100 * bar["p"], abs=0.06)
    check_chart(shown["chart"], records)
    # map at opacity 0.8 changes the picture a lot; switched off, the picture is the source frame
    # up to what JPEG itself loses on it
    jpeg_loss = picture_difference(
        decode(cv2.imencode(".jpg", source[index_off], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()),
        source[index_off],
    )
    assert picture_difference(without_map, source[index_off]) <= jpeg_loss + 2
    assert picture_difference(with_map, source[index_on]) > 5 * (jpeg_loss + 2)


READ_TILES = """() => Object.fromEntries([...document.querySelectorAll('#mosaic .tile')].map((tile) => {
  const img = tile.querySelector('.tile-video');
  const bars = [...tile.querySelectorAll('.bar-row')].map((row) => [row.dataset.class, Number(row.dataset.p)]);
  return [tile.dataset.stream, {index: tile.dataset.index === undefined ? -1 : Number(tile.dataset.index),
          label: tile.dataset.label, online: tile.dataset.online, width: img.naturalWidth,
          src: img.getAttribute('src'), bars: Object.fromEntries(bars),
          chart: tile.querySelector('.tile-timeline').dataset.index}];
}))"""
STREAM_CLASSES = {"north": 1, "south": 3, "east": 5}


def test_a_page_for_every_camera(model, tmp_path):
    from events_helpers import class_video

    videos = [class_video(tmp_path / f"{name}.avi", [cls] * 300, size=SIZE) for name, cls in STREAM_CLASSES.items()]
    outputs = [
        "--jsonl",
        str(tmp_path / "{stream}.jsonl"),
        "--clip-on",
        "all",
        "--clip-dir",
        str(tmp_path / "clips"),
        "--clip-pre",
        "1",
        "--clip-post",
        "0.5",
        "--event-hold",
        "0.5",
        "--event-min-score",
        "0.3",
    ]
    proc, url = start_webcam(model, videos, tmp_path, TOKEN, "--realtime", outputs=outputs)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 1000},
            )
            page = browser.new_page()
            page.goto(url + f"?token={TOKEN}")
            first = wait_for(
                lambda: (
                    (t := page.evaluate(READ_TILES))
                    and len(t) == 3
                    and all(v["index"] >= 0 and v["width"] > 0 and v["chart"] for v in t.values())
                    and t
                ),
                timeout=30,
            )
            later = wait_for(
                lambda: (
                    (t := page.evaluate(READ_TILES))
                    and all(t[name]["index"] > first[name]["index"] for name in t)
                    and t
                ),
                timeout=20,
            )
            wait_for(lambda: page.locator("#clips li").count() >= 3, timeout=20)
            page.locator("#clips li").first.click()
            wait_for(lambda: page.evaluate("() => document.getElementById('clip-player').naturalWidth") > 0)
            if os.environ.get("WSCNET_SCREENSHOT_STREAMS"):
                page.screenshot(path=os.environ["WSCNET_SCREENSHOT_STREAMS"], full_page=True)
            picked = _single_stream_page(browser, url, "south")
            status, _, body = get(url + "clips")
            assert status == 401  # the clips are behind the token like everything else
            clip_list = json.loads(get(url + f"clips?token={TOKEN}")[2])["clips"]
            assert get(url + f"clips/..%2Fnorth.jsonl?token={TOKEN}")[0] == 404
            clip = get(url + f"clips/{clip_list[0]['name']}?token={TOKEN}")
            browser.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    for name, tile in later.items():
        records = {r["index"]: r for r in read_jsonl(tmp_path / f"{name}.jsonl")}
        shown = records[tile["index"]]
        assert tile["label"] == shown["label"] and tile["online"] == "true"
        assert tile["src"].startswith("stream.mjpg?") and f"stream={name}" in tile["src"]
        assert tile["bars"] == pytest.approx(shown["probabilities"], abs=1e-6)
    # each tile shows its own camera: every stream's records are mostly its class (the test model
    # labels about 9 % of the class-5 pictures otherwise, so one shown frame may differ)
    frames = {n: [r for r in read_jsonl(tmp_path / f"{n}.jsonl") if "event" not in r] for n in later}
    majority = {n: Counter(r["label"] for r in rows).most_common(1)[0][0] for n, rows in frames.items()}
    assert majority == {n: f"class_{cls}" for n, cls in STREAM_CLASSES.items()}
    south = {r["index"]: r for r in read_jsonl(tmp_path / "south.jsonl")}
    assert picked["label"] == south[picked["index"]]["label"] == "class_3" and picked["picker"] == "south"
    assert {c["stream"] for c in clip_list} == set(STREAM_CLASSES)
    assert clip[0] == 200 and clip[1]["content-type"] == "video/mp4" and clip[2][4:8] == b"ftyp"


def _single_stream_page(browser, url: str, name: str) -> dict:
    """``?stream=NAME`` (the file's stem): that stream alone, in the one-stream layout."""
    page = browser.new_page()
    page.goto(url + f"?token={TOKEN}&stream={name}")
    wait_for(lambda: page.evaluate("() => document.getElementById('label').dataset.index !== ''"), timeout=30)
    return page.evaluate("""() => ({index: Number(document.getElementById('label').dataset.index),
        label: document.getElementById('label').textContent, picker: document.getElementById('picker').value,
        mosaic: document.getElementById('mosaic').hidden})""")
