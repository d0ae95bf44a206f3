"""Short videos around the moments that matter: a clip per ``label_changed`` to a watched label, with
the seconds before the change (pre-roll, from a ring buffer) and the seconds after it.

Memory is bounded: the ring keeps the last ``pre_s`` seconds of overlaid frames (references to the
pipeline's own frames, no copies), and a clip's frames go to a writer thread through a queue of at
most as many frames again plus ``SLACK_FRAMES``. So at most ``2 × pre-roll frames + SLACK_FRAMES``
frames of W×H×3 bytes are held, and ``memory`` caps that figure (the pre-roll is shortened to fit,
with a warning). A writer that falls behind loses frames of its clip (counted), never the run's time.

Each clip is written as a hidden ``.part`` file, moved into place once OpenCV can play it, with a
JSON sidecar (same name, ``.json``) listing the frame indices it holds and the events that
happened during it. Clips are named ``<stream>-<UTC time of the change>-<label>.mp4`` and, with a
disk budget, count against it (a sidecar goes with its clip).
"""

import json
import math
import os
import queue
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2

from ..errors import log
from ..events import LABEL_CHANGED, Event
from ..videoio import FOURCC, playable, temp_beside
from .base import Sink
from .disk import DiskBudget

SLACK_FRAMES = 64
CLIP_SUFFIX = ".mp4"
DEFAULT_MEMORY = 512 * 1000**2


@dataclass(frozen=True)
class ClipSettings:
    folder: Path
    labels: tuple[str, ...] | None = None  # None: every label
    pre_s: float = 5.0
    post_s: float = 5.0
    memory: int = DEFAULT_MEMORY  # bytes of frames held for clips, per stream

    def watches(self, label: str) -> bool:
        return self.labels is None or label in self.labels


def clip_stem(stream: str, event: Event) -> str:
    stamp = event.time.replace("-", "").replace(":", "").replace(".", "")  # 20261207T093001250Z
    return f"{stream}-{stamp}-{event.data.get('label', 'clip')}"


class _Clip:
    def __init__(self, stem: str, trigger: Event, end_t: float) -> None:
        self.stem, self.trigger, self.end_t = stem, trigger, end_t
        self.events = [trigger.to_dict()]
        self.frames_dropped = 0


class ClipRecorder(Sink):
    """One stream's clips. ``fps``: the source's frame rate (a number, or a function giving it)."""

    name = "clips"

    def __init__(self, settings: ClipSettings, stream: str, fps, budget: DiskBudget | None = None) -> None:
        self.settings, self.stream, self._fps = settings, stream, fps
        self.budget = budget
        if budget is not None:
            budget.register(settings.folder, f"{stream}-*{CLIP_SUFFIX}")
        self.ring: deque = deque()  # (index, timestamp, frame)
        self.ring_frames: int | None = None  # set on the first frame, once its size is known
        self.clip: _Clip | None = None
        self.counts = {"clips": 0, "clips_lost": 0, "clip_frames_dropped": 0}
        self._ops: queue.Queue = queue.Queue()  # ("open", clip, size, fps) / ("frame", …) / ("close", clip)
        self._frames_waiting = 0
        self._lock = threading.Lock()
        self._writer = _ClipWriter(self)
        self._thread = threading.Thread(target=self._writer.run, name=f"clips-{stream}", daemon=True)
        self._thread.start()

    # ---- Sink (render thread) --------------------------------------------------------------------
    def write(self, frame, prediction) -> None:
        t = float(prediction.timestamp or 0.0)
        if self.ring_frames is None:
            self.ring_frames = self._ring_capacity(frame)
        if self.clip is not None:
            if t > self.clip.end_t:
                self._end_clip()
            else:
                self._send_frame(prediction.index, frame)
        self.ring.append((prediction.index, t, frame))
        while len(self.ring) > self.ring_frames or t - self.ring[0][1] > self.settings.pre_s:
            self.ring.popleft()

    def event(self, event: Event) -> None:
        if self.clip is not None:
            self.clip.events.append(event.to_dict())
            return
        if event.type != LABEL_CHANGED or not self.settings.watches(str(event.data.get("label"))) or not self.ring:
            return
        t = float(event.data.get("timestamp") or self.ring[-1][1])
        self.clip = _Clip(clip_stem(self.stream, event), event, t + self.settings.post_s)
        first = self.ring[0][2]
        self._ops.put(("open", self.clip, (first.shape[1], first.shape[0]), self.fps))
        for index, _, frame in self.ring:  # the pre-roll, the frame of the change included
            self._send_frame(index, frame)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        if self.clip is not None:
            self._end_clip()
        self._ops.put(None)
        self._thread.join()
        self.ring.clear()

    # ---- helpers ---------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        value = float(self._fps() if callable(self._fps) else self._fps)
        return value if value > 0 else 15.0

    def _ring_capacity(self, frame) -> int:
        wanted = math.ceil(self.settings.pre_s * self.fps) + 1
        fits = max(1, (self.settings.memory // max(frame.nbytes, 1) - SLACK_FRAMES) // 2)
        if fits < wanted:
            log.warning(
                f"clips of {self.stream}: {self.settings.pre_s} s of pre-roll at {frame.shape[1]}x"
                f"{frame.shape[0]} needs more than the clip memory; keeping {fits} frames "
                f"({fits / self.fps:.1f} s)"
            )
        return min(wanted, fits)

    def _send_frame(self, index, frame) -> None:
        with self._lock:
            if self._frames_waiting >= self.ring_frames + SLACK_FRAMES:  # the writer is behind
                self.counts["clip_frames_dropped"] += 1
                self.clip.frames_dropped += 1
                return
            self._frames_waiting += 1
        self._ops.put(("frame", index, frame))

    def _end_clip(self) -> None:
        self._ops.put(("close", self.clip))
        self.clip = None

    def _taken(self) -> None:
        with self._lock:
            self._frames_waiting -= 1

    def _counted(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


class _ClipWriter:
    """The writer thread's side: one open clip at a time, written to a ``.part`` file."""

    def __init__(self, recorder: ClipRecorder) -> None:
        self.recorder = recorder
        self.writer = None
        self.part: Path | None = None
        self.indices: list = []
        self.size = (0, 0)
        self.fps = 0.0

    def run(self) -> None:
        while (op := self.recorder._ops.get()) is not None:
            try:
                getattr(self, "_" + op[0])(*op[1:])
            except (OSError, cv2.error) as exc:
                log.warning(f"clips of {self.recorder.stream}: {exc}")
            finally:
                if op[0] == "frame":
                    self.recorder._taken()

    def _open(self, clip: _Clip, size: tuple[int, int], fps: float) -> None:
        folder = self.recorder.settings.folder
        self.size, self.fps, self.indices = size, fps, []
        self.part = temp_beside(folder / (clip.stem + CLIP_SUFFIX), CLIP_SUFFIX)
        self.writer = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*FOURCC[CLIP_SUFFIX]), fps, size)
        if not self.writer.isOpened():
            self.writer = None
            self.part.unlink(missing_ok=True)
            log.warning(f"{folder}: OpenCV cannot write {CLIP_SUFFIX} clips here")

    def _frame(self, index, frame) -> None:
        if self.writer is None:
            return
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.indices.append(index)

    def _close(self, clip: _Clip) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        target = self.part.with_name(clip.stem + CLIP_SUFFIX)
        if not self.indices or not playable(self.part):
            self.part.unlink(missing_ok=True)
            self.recorder._counted("clips_lost")
            log.warning(f"{target}: the clip could not be finished (disk full?); dropped")
            return
        os.replace(self.part, target)
        _write_json(target.with_suffix(".json"), self._sidecar(clip, target))
        self.recorder._counted("clips")
        log.info(f"clip {target} ({len(self.indices)} frames, {clip.trigger.data.get('label')})")
        budget = self.recorder.budget
        if budget is not None and budget.enforce():
            _remove_orphan_sidecars(self.recorder.settings.folder, self.recorder.stream)

    def _sidecar(self, clip: _Clip, target: Path) -> dict:
        s = self.recorder.settings
        return {
            "clip": target.name,
            "stream": self.recorder.stream,
            "label": clip.trigger.data.get("label"),
            "time": clip.trigger.time,
            "model": clip.trigger.model,
            "fps": self.fps,
            "size": list(self.size),
            "pre_s": s.pre_s,
            "post_s": s.post_s,
            "frames": self.indices,
            "frames_dropped": clip.frames_dropped,
            "events": clip.events,
        }


def _write_json(path: Path, payload: dict) -> None:
    """Atomically: a hidden temporary beside it, then renamed into place."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_orphan_sidecars(folder: Path, stream: str) -> None:
    for sidecar in folder.glob(f"{stream}-*.json"):
        if not sidecar.with_suffix(CLIP_SUFFIX).exists():
            sidecar.unlink(missing_ok=True)


def list_clips(folder: Path, limit: int = 50) -> list[dict]:
    """The newest finished clips of ``folder`` (those with a sidecar), newest first, with their sidecars."""
    found = []
    for sidecar in sorted(Path(folder).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        clip = sidecar.with_suffix(CLIP_SUFFIX)
        if sidecar.name.startswith(".") or not clip.is_file():
            continue
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(
            {
                "name": clip.name,
                "stream": meta.get("stream"),
                "label": meta.get("label"),
                "time": meta.get("time"),
                "frames": len(meta.get("frames", [])),
                "bytes": clip.stat().st_size,
            }
        )
        if len(found) >= limit:
            break
    return found
