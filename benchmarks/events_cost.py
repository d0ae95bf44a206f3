"""What the event outputs cost inference: the pipeline's frame rate with label events, summaries,
MQTT, webhooks and clips all on, and with a webhook receiver that never answers, against the same
run with every output off.

    python -m benchmarks.events_cost [--model M.onnx] [--frames 240] [--rounds 3]

Every condition runs in one process, interleaved round by round (``measure.time_interleaved``), so
a shared machine's load hits them alike; the figure is each condition's median fps as a share of
the all-off median (the pipeline's own fps: frames over the time to the last frame written).
The broker (Debian's mosquitto) and the receivers (aiohttp) run on loopback in
this process's machine, so their CPU use competes with the pipeline's: a pessimistic set-up.
"""

import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import typer

from runtime.events_out import EventOptions
from runtime.model import Model
from runtime.pipeline import Pipeline, PipelineOptions
from runtime.publishers import MqttSettings, WebhookSettings
from runtime.sinks.clips import ClipSettings
from runtime.sources import open_source

from .local_services import Mosquitto, WebhookReceiver
from .measure import time_interleaved
from .video_pipeline import DEFAULT_WORKDIR, default_int8_model

TARGET_COST = 0.05  # at most 5 % of the frame rate


def class_video(path: Path, classes: list[int], fps: float = 15.0, size=(128, 96)) -> Path:
    """Frame i shows a synthetic picture of class ``classes[i]`` (a new random one each frame); MJPG .avi."""
    from export.testing import synthetic_image

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an MJPG .avi here")
    for i, cls in enumerate(classes):
        rgb = synthetic_image(cls, max(size), np.random.default_rng(1000 + i))
        writer.write(cv2.cvtColor(np.ascontiguousarray(rgb[: size[1], : size[0]]), cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)


def run_once(model: Model, video: Path, events: EventOptions | None) -> float:
    """The run's frame rate: frames over the time to the last frame written, not counting the
    publishers' drain at the end (up to their timeouts with a receiver that hangs)."""
    pipeline = Pipeline(
        model, [("bench", open_source(str(video)))], PipelineOptions(display=False, progress=False, events=events)
    )
    return pipeline.run()[0].fps


def conditions(broker: Mosquitto, receiver: WebhookReceiver, hanging: WebhookReceiver, clips: Path) -> dict:
    events = {"hold_s": 0.5, "min_score": 0.3, "every_s": 0.5}
    return {
        "all off": None,
        "MQTT + webhook + clips": EventOptions(
            **events,
            mqtt=MqttSettings("127.0.0.1", broker.port, prefix="bench"),
            webhooks=WebhookSettings((receiver.url,)),
            clips=ClipSettings(clips, None, pre_s=1.0, post_s=1.0),
        ),
        "webhook to a receiver that hangs": EventOptions(
            **events, webhooks=WebhookSettings((hanging.url,), timeout_s=5.0, retries=3)
        ),
    }


def events_cost(
    model: Path = typer.Option(None, "--model", help="An exported .onnx (default: the reference INT8 resnet18@224)."),
    frames: int = typer.Option(240, "--frames", help="Frames of the test video (15 fps, the class changes every 2 s)."),
    size: str = typer.Option("640x480", "--size", help="Frame size of the test video, WxH."),
    rounds: int = typer.Option(3, "--rounds", help="Timed runs of each condition, interleaved."),
    out: Path = typer.Option(None, "--out", help="Also write the figures here as JSON."),
) -> None:
    """fps with the event outputs on vs all off, in one process; the cost target is 5 %."""
    model = model or default_int8_model(DEFAULT_WORKDIR)
    width, height = (int(v) for v in size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="wscnet-events-cost-") as folder:
        work = Path(folder)
        video = class_video(work / "bench.avi", [(1, 3)[(i // 30) % 2] for i in range(frames)], size=(width, height))
        with (
            Mosquitto(work / "broker") as broker,
            WebhookReceiver() as receiver,
            WebhookReceiver("hang") as hanging,
            Model(model, device="cpu", threads=-1) as opened,
        ):
            measured: dict[str, list[float]] = {}
            runs = {
                name: (lambda name=name, e=e: measured.setdefault(name, []).append(run_once(opened, video, e)))
                for name, e in conditions(broker, receiver, hanging, work / "clips").items()
            }
            time_interleaved(runs, warmup=1, rounds=rounds)  # the interleaving; the fps come from the runs
            clips_made = len(list((work / "clips").glob("*.mp4")))
    fps = {name: float(np.median(values[1:])) for name, values in measured.items()}  # [0]: the warm-up
    rows = {name: {"fps": round(v, 2), "share_of_all_off": round(v / fps["all off"], 3)} for name, v in fps.items()}
    _print_table(rows, model, frames, (width, height), rounds, clips_made)
    if out is not None:
        out.write_text(json.dumps({"rows": rows, "model": str(model), "frames": frames, "rounds": rounds}, indent=1))


def _print_table(rows: dict, model: Path, frames: int, size, rounds: int, clips_made: int) -> None:
    print(
        f"model {model.name}, {frames} frames of {size[0]}x{size[1]}, median of {rounds} interleaved rounds, "
        f"{clips_made} clips written over all its runs"
    )
    print("| condition | fps | share of all off | within 5 % |")
    print("| --- | ---: | ---: | --- |")
    for name, row in rows.items():
        ok = "" if name == "all off" else ("yes" if row["share_of_all_off"] >= 1 - TARGET_COST else "no")
        print(f"| {name} | {row['fps']:.1f} | {row['share_of_all_off']:.3f} | {ok} |")


if __name__ == "__main__":
    typer.run(events_cost)
