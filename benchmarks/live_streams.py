"""N cameras on one box with inference scheduling: 640×480 30 fps files played in real time (each
frame handed over when due, marked live) through the runtime's pipeline, every frame drawn and
written (mp4 + JSONL per stream), inference at the rate the scheduler gives each stream.

Per stream: drawn fps, inferred fps, end-to-end latency p50 / p95 (capture → frame written),
dropped frames, and label agreement with every frame inferred under two views averaged (squash +
crop, the training default) and under the model's own views (what scheduling alone changes),
both computed offline on the same frames. A stream is held when it
draws >= ``HELD_FPS`` frames/s with p95 <= ``HELD_P95_MS``.

The slideshow cuts to a new picture every ``--scene-seconds`` (0.8 s by default: a hard case for
inferring some frames only). All streams play the same file; by default they start together, so
their cuts fall at the same instants. ``--stagger`` starts stream i i/N of a scene later, so the
cuts spread out as they would on independent cameras.

    python cli.py benchmark live-streams --model M.onnx --data DATA [--streams 4,8,16] [--seconds 20]
        [--scene-seconds 0.8] [--stagger]
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from runtime.framing import Framing
from runtime.model import Model
from runtime.pipeline import Pipeline, PipelineOptions

from .multistream import STREAM_FPS, PacedSource

HELD_FPS = 29.0
HELD_P95_MS = 150.0
SCENE_SECONDS = 0.8


def slideshow(data: Path, video: Path, seconds: float, scene_seconds: float = SCENE_SECONDS) -> Path:
    """A 640×480 30 fps slideshow of the data set's test pictures, a new one every ``scene_seconds``
    (written once)."""
    if video.is_file():
        return video
    from wscnet.data import load_index
    from wscnet.synth_video import write_slideshow_video

    frames_per_picture = max(1, round(scene_seconds * STREAM_FPS))
    pictures = int(seconds * STREAM_FPS) // frames_per_picture + 1
    samples = load_index(data, split="test").samples
    paths = [samples[i].path for i in np.linspace(0, len(samples) - 1, pictures).round().astype(int)]
    video.parent.mkdir(parents=True, exist_ok=True)
    write_slideshow_video(paths, video, frames_per_image=frames_per_picture)
    return video


def reference_labels(model: Model, video: Path, two_views: bool = True) -> list[str]:
    """Every frame inferred, with squash + crop averaged (``two_views``) or with the model's own views."""
    from runtime.sources import open_source

    contract = model.metadata.contract
    framing = Framing(
        replace(model.metadata, contract=contract.with_views(("squash", "crop"), "mean"))
        if two_views
        else model.metadata
    )
    source, labels = open_source(str(video)), []
    try:
        for frame in source.frames():
            batch = framing.new_batch(1)
            framing.to_tensor(frame.image, batch)
            probs = framing.combine(model.backend.infer(batch), 0)[0]
            labels.append(model.class_names[int(np.argmax(probs))])
    finally:
        source.close()
    return labels


def live_run(
    model: Model, video: Path, streams: int, seconds: float, out: Path, stagger_s: float = 0.0, **scheduling
) -> list[dict]:
    """``streams`` paced copies of ``video`` through the pipeline, stream i starting ``i × stagger_s``
    late; per-stream RunStats as dicts."""
    out.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(
        display=False, progress=False, save=out / "{stream}.mp4", jsonl=out / "{stream}.jsonl", **scheduling
    )
    sources = [(f"s{i}", PacedSource(video, STREAM_FPS, seconds, i * stagger_s)) for i in range(streams)]
    stats = [s.as_dict() for s in Pipeline(model, sources, options).run()]
    for i, s in enumerate(stats):  # rates over the stream's own time: a staggered stream starts late
        own_s = s["wall_s"] - i * stagger_s
        s["fps"], s["inferred_fps"] = s["frames_out"] / own_s, s["inferred"] / own_s
    return stats


def agreement(jsonl: Path, reference: list[str]) -> float:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "label" in r]
    return float(np.mean([r["label"] == reference[r["index"]] for r in rows])) if rows else float("nan")


def measure(
    model_path: Path,
    data: Path,
    streams: list[int],
    seconds: float,
    workdir: Path,
    scene_seconds: float = SCENE_SECONDS,
    stagger: bool = False,
    **scheduling,
) -> dict:
    name = f"slideshow-{int(seconds)}s-scene{scene_seconds:g}s.mp4"
    video = slideshow(data, workdir / name, seconds, scene_seconds)
    result = {"model": str(model_path), "video": str(video), "scene_seconds": scene_seconds, "stagger": stagger}
    result["runs"] = []
    with Model(model_path, device="cpu", threads=-1) as model:
        result["views"] = " + ".join(model.metadata.contract.views)
        result["backend"] = model.description
        reference, own = reference_labels(model, video), reference_labels(model, video, two_views=False)
        result["own_views_vs_two_views"] = float(np.mean([a == b for a, b in zip(own, reference)]))
        for n in streams:
            out = workdir / f"live-{n}"
            stats = live_run(model, video, n, seconds, out, scene_seconds / n if stagger else 0.0, **scheduling)
            for s in stats:
                s["label_agreement"] = agreement(out / f"{s['stream']}.jsonl", reference)
                s["agreement_same_views"] = agreement(out / f"{s['stream']}.jsonl", own)
                s["held"] = s["fps"] >= HELD_FPS and (s["end_to_end_ms_p95"] or 1e9) <= HELD_P95_MS
            result["runs"].append({"streams": n, "held": sum(s["held"] for s in stats), "per_stream": stats})
    return result


def markdown(result: dict) -> str:
    lines = [
        f"model {Path(result['model']).name} ({result['views']}, {result['backend']}), video {result['video']} "
        f"(a cut every {result['scene_seconds']:g} s, streams {'staggered' if result['stagger'] else 'in step'}); "
        f"every frame, its views vs squash + crop: {result['own_views_vs_two_views']:.3f} of labels agree",
        "",
        "| streams | stream | drawn fps | inferred fps | e2e p50 ms | e2e p95 ms | dropped | "
        "agreement vs every frame, two views | vs every frame, same views | held |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in result["runs"]:
        for s in run["per_stream"]:
            lines.append(
                f"| {run['streams']} | {s['stream']} | {s['fps']:.1f} | {s['inferred_fps']:.1f} | "
                f"{s['end_to_end_ms_p50']:.0f} | {s['end_to_end_ms_p95']:.0f} | {s['dropped']} | "
                f"{s['label_agreement']:.3f} | {s['agreement_same_views']:.3f} | {'yes' if s['held'] else 'no'} |"
            )
        lines.append(f"| {run['streams']} | **held** | | | | | | | | **{run['held']} of {run['streams']}** |")
    return "\n".join(lines)


def print_live_streams(model: Path, data: Path, streams: list[int], seconds: float, workdir: Path, **options) -> dict:
    result = measure(model, data, streams, seconds, workdir, **options)
    print(markdown(result))
    print(json.dumps(result, indent=1))
    return result
