"""One schema for everything a run can be told, read from command-line flags or from a TOML file.

``SETTINGS`` is the only place a run option is defined: its section in the file, its flag, type,
default and help. ``webcam``'s flags are generated from it, and ``run --config edge.toml`` reads the
same names from the file (standard library ``tomllib``), so a file and the flags that say the same
thing give the same ``RunConfig``. A bad key or value is refused before anything starts, naming it.
"""

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Literal, Optional

import tomllib
import typer

from .choices import DEVICES
from .contract import GEOMETRIES
from .errors import RuntimeUserError
from .sinks.disk import parse_size
from .uri import DECODERS


@dataclass(frozen=True)
class Setting:
    section: str  # the TOML table it lives in
    key: str  # its name in that table, and the Python keyword
    kind: Any  # int, float, str, bool, Path, "size", list (of str), or a tuple of choices
    default: Any
    help: str
    flag: str | None = None  # default: --key-with-dashes
    minimum: float | None = None
    maximum: float | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model",
        "model",
        str,
        None,
        "Exported model: .onnx, or a TensorRT .engine with its .json, or "
        "triton://HOST:PORT/MODEL (triton+http:// for HTTP)",
    ),
    Setting(
        "model",
        "device",
        DEVICES,
        "auto",
        "auto, cpu, cuda or tensorrt (ONNX Runtime providers), or openvino / openvino:CPU / openvino:GPU",
    ),
    Setting(
        "model",
        "threads",
        int,
        -1,
        "Inference threads (-1 = all cores but one, left to capture and drawing; 0 = the back-end's default)",
        minimum=-1,
    ),
    Setting(
        "model",
        "precision",
        ("fp32", "bf16"),
        None,
        "OpenVINO only: fp32 (default) or bf16 for a float model; a Q/DQ model runs INT8",
    ),
    Setting(
        "model",
        "resize",
        GEOMETRIES,
        None,
        "Override the model's input contract (default: the geometry it "
        "was trained with): squash (whole frame), crop (centre square) or letterbox",
    ),
    Setting(
        "model",
        "watch_model",
        bool,
        True,
        "Reload the model when its file is replaced (checked first; a bad file keeps the running one)",
        flag="--watch-model/--no-watch-model",
    ),
    Setting(
        "sources",
        "source",
        list,
        None,
        "Camera index, video file, image, folder of images, rtsp/http URL, "
        "csi://N, v4l2:///dev/videoN or gst://PIPELINE (docs/jetson-cameras.md); repeat for several streams "
        "(default: camera 0)",
    ),
    Setting("sources", "sources", Path, None, "A file with one source per line (# comments)"),
    Setting("sources", "keep_going", bool, False, "Run the sources that open when others cannot be opened"),
    Setting(
        "sources",
        "reconnect",
        int,
        None,
        "Reconnection attempts in a row before a live source is given up "
        "(default: for ever; waits of 0.5 s doubling to 30 s)",
        minimum=0,
    ),
    Setting(
        "sources",
        "decoder",
        DECODERS,
        "auto",
        "How RTSP streams and H.264/H.265 files are decoded: opencv "
        "(FFmpeg), cpu (GStreamer avdec), nvdec (Jetson nvv4l2decoder), auto (nvdec where it exists, else "
        "opencv)",
    ),
    Setting("sources", "realtime", bool, False, "Play a file at its own frame rate (to watch it live)"),
    Setting("sources", "max_frames", int, None, "Stop each stream after this many frames", minimum=1),
    Setting(
        "output",
        "save",
        Path,
        None,
        "Write the overlaid video here (.mp4 or .avi); several streams: a name with {stream}",
    ),
    Setting(
        "output",
        "segment",
        float,
        None,
        "Cut --save into files of this many seconds, each playable once the next begins (<name>-<UTC start>.mp4)",
        minimum=0.1,
    ),
    Setting("output", "max_disk", "size", None, "Disk budget of the recordings (e.g. 2GB): the oldest go first"),
    Setting("output", "min_free", "size", "64MB", "Recording pauses while the disk has less free space than this"),
    Setting(
        "output",
        "jsonl",
        str,
        None,
        "One JSON record per frame and per event (- for standard output); several streams: a name with {stream}",
    ),
    Setting("output", "no_display", bool, False, "Never open a window (headless boxes)"),
    Setting("overlay", "smooth", float, 0.0, "EMA factor for the overlay (0 = off)", minimum=0.0, maximum=0.99),
    Setting("overlay", "opacity", float, 0.45, "Opacity of the sentiment map (0: not drawn)", minimum=0.0, maximum=1.0),
    Setting(
        "batching",
        "batch_size",
        int,
        None,
        "Frames per inference call, at most one per stream (default: the number of streams)",
        minimum=1,
    ),
    Setting(
        "batching",
        "batch_timeout_ms",
        float,
        33.0,
        "Send a batch that is not full this long after its first frame arrived",
        minimum=0.0,
    ),
    Setting(
        "batching",
        "infer_every",
        int,
        None,
        "Infer every N-th frame of each stream; the others are drawn with "
        "the newest prediction (default: every frame the box keeps up with)",
        minimum=1,
    ),
    Setting(
        "batching", "infer_fps", float, None, "Infer at most this many frames per second of each stream", minimum=0.01
    ),
    Setting(
        "batching",
        "infer_on_change",
        float,
        None,
        "Infer a frame early when its 32x18 grey thumbnail differs "
        "from the last inferred one by more than this (mean absolute grey levels, e.g. 12)",
        minimum=0.01,
    ),
    Setting("serve", "serve", str, None, "Serve a live page at [HOST:]PORT (loopback unless HOST is given)"),
    Setting("serve", "token", str, None, "Secret every route but /healthz requires (bearer or ?token=); needs --serve"),
    Setting("serve", "max_clients", int, 8, "Viewers at once; the next gets 503", minimum=1),
    Setting(
        "events",
        "label_events",
        bool,
        None,
        "Emit label_changed events (default: on when --mqtt, --webhook or --clip-on is given)",
        flag="--label-events/--no-label-events",
    ),
    Setting(
        "events", "event_hold", float, 1.0, "Seconds a new label must stay on top before label_changed", minimum=0.0
    ),
    Setting(
        "events",
        "event_min_score",
        float,
        0.5,
        "Score the new label needs on each of those frames",
        minimum=0.0,
        maximum=1.0,
    ),
    Setting(
        "events", "event_every", float, None, "A summary event every this many seconds of each stream", minimum=0.1
    ),
    Setting(
        "mqtt",
        "mqtt",
        str,
        None,
        "Publish events to this MQTT broker: HOST[:PORT] or mqtts://HOST:PORT "
        "(topics <prefix>/<stream>/event and /state)",
    ),
    Setting("mqtt", "mqtt_prefix", str, "wscnet", "First level of the MQTT topics"),
    Setting("mqtt", "mqtt_username", str, None, "MQTT user name"),
    Setting("mqtt", "mqtt_password", str, None, "MQTT password (or WSCNET_MQTT_PASSWORD)"),
    Setting("mqtt", "mqtt_tls", bool, False, "Connect to the broker over TLS (port 8883 unless given)"),
    Setting("mqtt", "mqtt_ca", Path, None, "CA certificate file for the broker's TLS (implies --mqtt-tls)"),
    Setting(
        "mqtt", "mqtt_queue", int, 1000, "Events kept while the broker is away; more are dropped and counted", minimum=1
    ),
    Setting("webhooks", "webhook", list, None, "POST every event as JSON to this URL; repeat for several"),
    Setting(
        "webhooks",
        "webhook_secret",
        str,
        None,
        "Sign webhook bodies: X-Wscnet-Signature: sha256=HMAC (or WSCNET_WEBHOOK_SECRET)",
    ),
    Setting("webhooks", "webhook_timeout", float, 5.0, "Seconds one webhook request may take", minimum=0.1),
    Setting(
        "webhooks",
        "webhook_retries",
        int,
        3,
        "Retries of a failed webhook delivery (0.5 s, 1 s, 2 s … apart)",
        minimum=0,
    ),
    Setting(
        "webhooks",
        "webhook_queue",
        int,
        1000,
        "Events waiting per webhook URL; more are dropped and counted",
        minimum=1,
    ),
    Setting("clips", "clip_on", str, None, "Save a clip when the label changes to one of these (joy,fear) or all"),
    Setting("clips", "clip_dir", Path, Path("clips"), "Folder of the clips (mp4 + JSON sidecar)"),
    Setting("clips", "clip_pre", float, 5.0, "Seconds of video before the change in each clip", minimum=0.0),
    Setting("clips", "clip_post", float, 5.0, "Seconds of video after the change in each clip", minimum=0.0),
    Setting("clips", "clip_memory", "size", "512MB", "Memory for the clips' frames per stream (caps the pre-roll)"),
)
BY_KEY = {s.key: s for s in SETTINGS}
ENV_VARS = {"token": "WSCNET_TOKEN", "mqtt_password": "WSCNET_MQTT_PASSWORD", "webhook_secret": "WSCNET_WEBHOOK_SECRET"}
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))


@dataclass(frozen=True)
class RunConfig:
    """Every setting by key, validated; ``values["model"]`` is the model path."""

    values: dict

    def __getitem__(self, key: str):
        return self.values[key]


def from_flags(flags: dict) -> RunConfig:
    """The ``webcam`` command's keyword arguments (already typed by typer) → RunConfig."""
    unknown = set(flags) - set(BY_KEY)
    if unknown:
        raise RuntimeUserError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = {key: flags.get(key, BY_KEY[key].default) for key in BY_KEY}
    for key, setting in BY_KEY.items():  # a repeatable flag given no times is typer's (), the file's absent key
        if setting.kind is list:
            values[key] = list(values[key]) if values[key] else setting.default
    return _checked(values, origin="")


def from_toml(path: str | Path) -> RunConfig:
    """``[section] key = value`` tables of ``SETTINGS``; one error line naming the file and the key."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuntimeUserError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuntimeUserError(f"{path}: not valid TOML ({exc})") from None
    values = {key: s.default for key, s in BY_KEY.items()}
    for section, table in document.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise RuntimeUserError(f"{path}: unknown section [{section}]; sections: {', '.join(SECTIONS)}")
        for key, value in table.items():
            setting = BY_KEY.get(key)
            if setting is None or setting.section != section:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise RuntimeUserError(f"{path}: unknown key {section}.{key}; [{section}] takes {known}")
            values[key] = _typed(setting, value, f"{path}: {section}.{key}")
    return _checked(values, origin=f"{path}: ")


def _typed(setting: Setting, value, where: str):
    """A TOML value as the setting's type; one error line naming ``where`` when it is not one."""
    kind = setting.kind
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        Path: isinstance(value, str),
        "size": isinstance(value, (str, int)) and not isinstance(value, bool),
        list: isinstance(value, list) and all(isinstance(v, (str, int)) for v in value),
    }
    if isinstance(kind, tuple):
        if value not in kind:
            raise RuntimeUserError(f"{where}: {value!r} is not one of {', '.join(kind)}")
        return value
    if not ok[kind]:
        raise RuntimeUserError(f"{where}: expected {_kind_name(kind)}, got {value!r}")
    return {float: float, Path: Path, list: lambda v: [str(x) for x in v]}.get(kind, lambda v: v)(value)


def _checked(values: dict, origin: str) -> RunConfig:
    """Ranges, sizes and combinations; the error names the flag (or the file's key)."""
    for setting in SETTINGS:
        value = values[setting.key]
        name = f"{setting.section}.{setting.key}" if origin else setting.option.split("/")[0]
        if value is None:
            continue
        if (
            setting.minimum is not None
            and value < setting.minimum
            or setting.maximum is not None
            and value > setting.maximum
        ):
            bounds = f"at least {setting.minimum}" + (
                "" if setting.maximum is None else f" and at most {setting.maximum}"
            )
            raise RuntimeUserError(f"{origin}{name}: {value} must be {bounds}")
        if setting.kind == "size":
            try:
                parse_size(value)
            except ValueError as exc:
                raise RuntimeUserError(f"{origin}{name}: {exc}") from None
    if values["model"] is None:
        raise RuntimeUserError(f"{origin}{'model.model' if origin else '--model'}: the model to run is required")
    if values["infer_every"] is not None and values["infer_fps"] is not None:
        names = ("batching.infer_every", "batching.infer_fps") if origin else ("--infer-every", "--infer-fps")
        raise RuntimeUserError(f"{origin}{names[0]} and {names[1]} are two rates: give one")
    if values["token"] is not None and values["serve"] is None:
        raise RuntimeUserError(
            f"{origin}{'serve.token' if origin else '--token'} only protects the live page: "
            "give --serve [HOST:]PORT too, or leave the token out"
        )
    return RunConfig(dict(values))


def _kind_name(kind) -> str:
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        Path: "a path",
        "size": 'a size such as "2GB"',
        list: "a list of strings",
    }[kind]


def typer_parameters() -> list[inspect.Parameter]:
    """The ``webcam`` command's parameters, one per setting (typer reads a function's signature)."""
    return [
        inspect.Parameter(s.key, inspect.Parameter.KEYWORD_ONLY, default=_option(s), annotation=_annotation(s))
        for s in SETTINGS
    ]


def _option(s: Setting):
    extra = {k: v for k, v in (("min", s.minimum), ("max", s.maximum)) if v is not None}
    if s.key == "model":
        return typer.Option(..., s.option, help=s.help)
    if s.key in ENV_VARS:
        extra["envvar"] = ENV_VARS[s.key]
    return typer.Option(s.default, s.option, help=s.help, **extra)


def _annotation(s: Setting):
    if isinstance(s.kind, tuple):
        return Optional[Literal[s.kind]] if s.default is None else Literal[s.kind]
    base = {list: List[str], "size": str}.get(s.kind, s.kind)
    return Optional[base] if s.default is None else base
