"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch.

``webcam`` takes its flags from ``runtime.config.SETTINGS``, and ``run --config FILE`` reads the
same settings from a TOML file; both end in ``start_run``.
"""

import inspect
from pathlib import Path

import typer

from . import config as run_config
from .errors import log
from .validate import check_webcam_paths


def register(app: typer.Typer) -> None:
    app.command("webcam")(webcam)
    app.command("run")(run)


def webcam(**flags) -> None:
    """Run the sentiment model on cameras, videos, images or streams with a live overlay; several sources share one model, batched."""
    start_run(run_config.from_flags(flags))


webcam.__signature__ = inspect.Signature(run_config.typer_parameters())


def run(
    config: Path = typer.Option(
        ...,
        "--config",
        help="A TOML file with the settings webcam takes as flags "
        f"({', '.join(f'[{s}]' for s in run_config.SECTIONS)})",
    ),
) -> None:
    """Run as a service from one config file (the same settings as webcam's flags): python cli.py run --config edge.toml."""
    start_run(run_config.from_toml(config))


def start_run(cfg: run_config.RunConfig) -> None:
    from .events_out import event_options
    from .sinks.disk import parse_size
    from .sources import read_source_list
    from .video import check_run, run_videos

    save, jsonl = cfg["save"], cfg["jsonl"]
    check_webcam_paths(cfg["model"], save, None if jsonl in (None, "-") else Path(jsonl))
    live = None
    if cfg["serve"] is not None:
        from .serve import parse_address

        host, port = parse_address(cfg["serve"])
        live = {"host": host, "port": port, "token": cfg["token"], "max_clients": cfg["max_clients"]}
    specs = list(cfg["source"] or []) + (read_source_list(cfg["sources"]) if cfg["sources"] is not None else [])
    all_stats = run_videos(
        cfg["model"],
        specs or ["0"],
        keep_going=cfg["keep_going"],
        device=cfg["device"],
        threads=cfg["threads"],
        precision=cfg["precision"],
        resize=cfg["resize"],
        save=save,
        jsonl=jsonl,
        display=False if cfg["no_display"] else None,
        smooth=cfg["smooth"],
        opacity=cfg["opacity"],
        max_frames=cfg["max_frames"],
        batch_size=cfg["batch_size"],
        batch_timeout_ms=cfg["batch_timeout_ms"],
        infer_every=cfg["infer_every"],
        infer_fps=cfg["infer_fps"],
        infer_on_change=cfg["infer_on_change"],
        serve=live,
        realtime=cfg["realtime"],
        reconnect=cfg["reconnect"],
        decoder=cfg["decoder"],
        watch_model=cfg["watch_model"],
        segment_s=cfg["segment"],
        max_disk=parse_size(cfg["max_disk"]) if cfg["max_disk"] else None,
        min_free=parse_size(cfg["min_free"]),
        events=event_options(cfg.values),
    )
    _report(all_stats, save, jsonl)
    check_run(all_stats)


def _report(all_stats, save, jsonl) -> None:
    if not any(s.frames_out for s in all_stats):
        return  # nothing ran (every source gone from the start): check_run says why
    for stats in all_stats:
        prefix = f"{stats.stream}: " if len(all_stats) > 1 else ""
        log.info(prefix + stats.summary_line())
    if len(all_stats) > 1:
        frames = sum(s.frames_out for s in all_stats)
        wall = max(s.wall_s for s in all_stats)
        log.info(
            f"{len(all_stats)} streams: {frames} frames in {wall:.1f} s ({frames / max(wall, 1e-9):.1f} fps together)"
        )
    if save is not None:
        log.info(f"saved {save}")
    if jsonl not in (None, "-"):
        log.info(f"wrote {jsonl}")
