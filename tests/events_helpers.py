"""Videos whose labels are known, and in-process runs with event outputs, for the event tests."""

from pathlib import Path

from benchmarks.events_cost import class_video  # noqa: F401 (the tests' videos of known classes)
from runtime.events_out import EventOptions
from runtime.sinks import read_records
from runtime.video import run_videos

# classes the test model (runtime_fixtures.exported_model) tells apart on every frame of synthetic_image
STEADY_A, STEADY_B = 1, 3


def flicker_classes(steady: int = 30, flicker: int = 30) -> list[int]:
    """A for ``steady`` frames, A/B alternating every frame for ``flicker`` frames, then B."""
    return [STEADY_A] * steady + [(STEADY_A, STEADY_B)[i % 2] for i in range(flicker)] + [STEADY_B] * steady


def run_with_events(model, videos, out: Path, events: EventOptions, **options) -> tuple[list, list[list[dict]]]:
    """Every video through one model (in-process), JSONL per stream; (stats, records of each stream)."""
    template = out / ("{stream}.jsonl" if len(videos) > 1 else "out.jsonl")
    stats = run_videos(
        model,
        [str(v) for v in videos],
        threads=1,
        jsonl=template,
        display=False,
        progress=False,
        events=events,
        watch_model=False,
        **options,
    )
    paths = [out / f"{s.stream}.jsonl" for s in stats] if len(videos) > 1 else [out / "out.jsonl"]
    return stats, [read_records(p) for p in paths]


def frames_of(records: list[dict]) -> list[dict]:
    return [r for r in records if "event" not in r]


def events_of(records: list[dict], kind: str | None = None) -> list[dict]:
    return [r for r in records if "event" in r and (kind is None or r["event"] == kind)]
