"""The model's input contract: how a picture of any shape becomes the model's N×3×S×S input.

It is decided once, when the model is trained, stored in the checkpoint (``input_contract``),
copied by export into the ONNX metadata and the engine sidecar, and read back by every consumer
(runtime, calibration, parity, bench, eval). Nothing re-derives it. See docs/input-contract.md.

Geometries (what part of a W×H frame lands where in the S×S input):
- ``squash``: the whole frame resized to S×S (aspect not kept); the map covers the whole frame.
- ``crop``: the centre square of the frame, resized to S×S; the map covers that square.
- ``letterbox``: the whole frame scaled to fit S×S, aspect kept, bars of the mean colour.

``extra_views``: further geometries of the same frame, run in the same batch; the sentiment map
is the first view's. ``combine`` says how the views' class scores become the frame's: ``mean``
(averaged) or ``max_confidence`` (the view whose top probability is highest speaks for the frame).
The training default is ``squash`` + ``crop``, averaged; export measures on camera-shaped frames
whether the second view pays for itself and records one view where it does not
(``export/views.py``, docs/views.md).
"""

import json
from dataclasses import asdict, dataclass, field, replace

GEOMETRIES = ("squash", "crop", "letterbox")
INTERPOLATIONS = ("area", "linear")  # area: anti-aliased shrinking (block average, then linear)
COLOR_ORDERS = ("RGB",)
COMBINES = ("mean", "max_confidence")  # how several views' scores become one; mean is the default
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Files written before the contract existed were evaluated, calibrated and checked on whole
# images resized to S×S, so that is what they are read with.
FALLBACK_GEOMETRY = "squash"
FALLBACK_INTERPOLATION = "area"


@dataclass(frozen=True)
class InputContract:
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    geometry: str = "squash"
    interpolation: str = "area"
    color: str = "RGB"
    extra_views: tuple[str, ...] = field(default=("crop",))
    combine: str = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.input_size < 16:
            raise ValueError(f"input_size must be >= 16, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std must be 3 values each with std > 0, got {self.mean}, {self.std}")
        _check_choice("geometry", self.geometry, GEOMETRIES)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("color", self.color, COLOR_ORDERS)
        _check_choice("combine", self.combine, COMBINES)
        object.__setattr__(self, "extra_views", tuple(self.extra_views))
        for view in self.extra_views:
            _check_choice("extra view", view, GEOMETRIES)
        if len({self.geometry, *self.extra_views}) != 1 + len(self.extra_views):
            raise ValueError(f"views must differ: {self.geometry} + {list(self.extra_views)}")

    @property
    def views(self) -> tuple[str, ...]:
        """Every geometry a frame is shown to the model in; the first one's map is the map."""
        return (self.geometry, *self.extra_views)

    def with_geometry(self, geometry: str) -> "InputContract":
        """This contract with one view only: ``geometry`` (an override, or one view of several)."""
        return replace(self, geometry=geometry, extra_views=(), combine="mean")

    def with_views(self, views: tuple[str, ...], combine: str = "mean") -> "InputContract":
        """This contract with ``views`` (the first one's map is the map), combined by ``combine``."""
        return replace(
            self, geometry=views[0], extra_views=tuple(views[1:]), combine=combine if len(views) > 1 else "mean"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"], d["extra_views"] = list(self.mean), list(self.std), list(self.extra_views)
        if self.combine == "mean":  # the default is left out: files stay readable by runtimes before the key
            del d["combine"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "InputContract":
        """From a stored contract; unknown keys are an error (a newer writer), missing ones fall back."""
        known = {"input_size", "mean", "std", "geometry", "interpolation", "color", "extra_views", "combine"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown input-contract keys {unknown}")
        if "input_size" not in d:
            raise ValueError("input contract lacks input_size")
        return cls(**{"extra_views": (), **d})

    @classmethod
    def fallback(cls, input_size: int, mean, std) -> "InputContract":
        """The contract of a file written before contracts were recorded."""
        return cls(input_size, tuple(mean), tuple(std), FALLBACK_GEOMETRY, FALLBACK_INTERPOLATION, extra_views=())

    def describe(self) -> str:
        combined = f" ({self.combine.replace('_', ' ')})" if len(self.views) > 1 else ""
        return (
            f"{' + '.join(self.views)}{combined} to {self.input_size}x{self.input_size}, "
            f"{self.interpolation}, {self.color}"
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
