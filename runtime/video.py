"""From a model path and source specs to a finished run: what ``webcam`` / ``run`` and the benchmarks call.

The front of the runtime's layers: it opens the model and the sources, builds the pipeline with its
outputs, the live page, the model watcher and the service hooks (signals, systemd), runs it, and
turns how it ended into the exit code a supervisor reads (``check_run``).
"""

from pathlib import Path

from .choices import is_triton_url
from .errors import RunFault, SourcesLost, log
from .model import Model
from .pipeline import Pipeline, PipelineOptions, RunStats
from .reload import ModelReloader
from .service import service_session
from .sinks.window import GUI_EXTRA, gui_opencv, screen_present
from .sources import open_sources


def run_videos(
    model: str | Path,
    sources: list[str],
    *,
    keep_going: bool = False,
    device: str = "auto",
    threads: int = 0,
    precision: str | None = None,
    resize: str | None = None,
    serve: dict | None = None,
    reconnect: int | None = None,
    watch_model: bool = True,
    decoder: str = "auto",
    **options,
) -> list[RunStats]:
    """Every source through one model, batched; one RunStats per stream that could be opened.
    ``options``: ``PipelineOptions`` fields (``save`` / ``jsonl`` may hold ``{stream}``);
    ``serve``: host, port, token, max_clients of a live page (``runtime.serve``); ``reconnect``:
    attempts in a row before a live source is given up (None: for ever); ``watch_model``: reload
    the model when its file is replaced; ``decoder``: how RTSP streams and files are decoded
    (``runtime.uri.DECODERS``)."""
    for key in ("save", "jsonl"):
        if options.get(key) and str(options[key]) != "-":
            options[key] = Path(options[key])
    settings = PipelineOptions(**options)
    serve = _page_instead_of_window(settings, serve)
    # a bad source is one line before the model is loaded (and --device auto probes)
    streams = open_sources([str(s) for s in sources], keep_going, reconnect, decoder)
    try:
        opened = Model(model, device=device, threads=threads, precision=precision, resize=resize)
    except BaseException:
        for _, source in streams:
            source.close()
        raise
    pipeline = None
    try:
        note = opened.metadata.override_note(resize)
        if note:
            log.info(note)
        pipeline = Pipeline(opened, streams, settings)
        return _run(pipeline, model, serve, resize, watch_model and not is_triton_url(model))
    finally:
        opened.close()
        if pipeline is not None and pipeline.model is not opened:
            pipeline.model.close()  # a model swapped in while the run went on


def _run(pipeline: Pipeline, model_path, serve: dict | None, resize: str | None, watch: bool) -> list[RunStats]:
    reloader = ModelReloader(pipeline, model_path, pipeline.model.open_options).start() if watch else None
    server = None
    try:
        if serve is not None:
            from .serve.attach import serve_pipeline  # the serve extra (aiohttp) only when asked for

            server = serve_pipeline(pipeline, serve, resize, reloader.reload_now if reloader else None)
        with service_session(pipeline):
            return pipeline.run()
    finally:
        if server is not None:
            server.stop()
        if reloader is not None:
            reloader.stop()


def _page_instead_of_window(settings: PipelineOptions, serve: dict | None) -> dict | None:
    """A screen but an OpenCV without a GUI (the default headless wheel): say so in one line and show
    the overlay on a loopback page instead (its address printed, and opened in a browser if there is one)."""
    if settings.display is not None or not screen_present() or gui_opencv():
        return serve
    settings.display = False
    if serve is not None:
        log.warning(
            f"this OpenCV has no GUI, so no window; install the '{GUI_EXTRA}' extra for one "
            "(the live page shows the overlay)"
        )
        return serve
    log.warning(
        f"this OpenCV has no GUI, so no window; install the '{GUI_EXTRA}' extra for one. "
        "The overlay is served on loopback instead:"
    )
    return {"host": "127.0.0.1", "port": 0, "token": None, "max_clients": 8, "open_browser": True}


def check_run(all_stats: list[RunStats]) -> None:
    """Raise what a supervisor must hear about: a source gone for good (exit 4)."""
    lost = [s for s in all_stats if s.lost]
    if lost:
        names = "; ".join(f"{s.source}: {s.problem or 'gone'}" for s in lost)
        raise SourcesLost(f"{names}; gone for good after the reconnection attempts (--reconnect)")


def run_video(model: str | Path, source: str | int, **options) -> RunStats:
    """One source: ``run_videos`` with a single stream."""
    return run_videos(model, [str(source)], **options)[0]


__all__ = ["RunFault", "check_run", "run_video", "run_videos"]
