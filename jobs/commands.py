"""End-to-end jobs that chain training, export and the runtime: ``python cli.py demo`` and
``python cli.py job ...``. Registered by cli.py; imports stay light here (no torch)."""

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="End-to-end jobs: the GPU acceptance run, the demo's summary.")


def demo(out: Path = typer.Option(Path("runs/demo"), help="Folder for everything the demo writes.")) -> None:
    """The whole chain on built-in synthetic data: synth → train → eval → predict → export INT8 →
    a video through the torch-free runtime with the overlay saved, then the figures it reached."""
    from .demo import run_demo

    run_demo(out)


@app.command("demo-summary")
def demo_summary(
    summary: Path = typer.Argument(Path("runs/demo/summary.json"), help="The summary.json a demo run wrote."),
) -> None:
    """The demo's block of figures, printed again from its summary.json."""
    from wscnet.errors import UserError

    from .demo_summary import main

    if not summary.is_file():
        raise UserError(f"{summary}: no such file (python cli.py demo writes it)")
    main([str(summary)])


@app.command("gpu-acceptance")
def gpu_acceptance(
    out: Path = typer.Option(
        Path("gpu-acceptance"), "--out", envvar="OUT", help="Folder for gpu_acceptance.json and the bench results."
    ),
) -> None:
    """The GPU acceptance run for a lent machine: AMP training, the fused op's Triton kernel and its
    PTX, the torch-cuda bench rows. Without CUDA it says so in one line and exits 0."""
    from .gpu_acceptance import gpu_acceptance as run_acceptance

    run_acceptance(out)


def register(app_: typer.Typer) -> None:
    app_.command("demo")(demo)
    app_.add_typer(app, name="job")
