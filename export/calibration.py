"""Activation ranges for INT8 from calibration images, in memory that does not grow with their number.

Range collection only; where the Q/DQ nodes go is ``export.int8``'s business (or any other
layout's): ``collect_ranges`` returns onnxruntime's ``TensorsData``, which ``quantize_static``
takes through its calibration cache.

onnxruntime's own calibrators keep every image's intermediate outputs until the end (entropy and
percentile: every calibrated tensor of every image, about 0.6 GB per image for ResNet-101 at
448 px); its ``CalibMaxIntermediateOutputs`` applies to min-max only. Here each image is run,
reduced and dropped:

- ``max``: onnxruntime's min-max calibrator (in-graph ReduceMin / ReduceMax) fed one image per
  call; it folds each image's range into the running one (a min of mins: the one-shot numbers).
- ``entropy``: with onnxruntime's default settings its threshold search has one candidate, the
  whole histogram clipped to the tensor's min and max (``entropy_is_full_range``), so its ranges
  are the min-max ranges: collected as above, labelled entropy. Otherwise, as percentile.
- ``percentile``: two passes over the images. The first finds each tensor's value range, which
  fixes the bin layout onnxruntime would have chosen with all images at once; the second counts
  every image into those fixed bins. Counts add, so the histograms, and the thresholds
  onnxruntime's collector then finds in them, are the one-shot run's. Memory: one image's
  intermediate tensors plus the histograms (kilobytes per tensor).

Each equality is checked against onnxruntime's one-shot calibration in
``tests/test_calibration_memory.py`` (scales bit for bit).
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wscnet.errors import UserError

from .choices import CALIB_METHODS
from .footprint import ModelFootprint
from .images import load_image


class CalibrationImages:
    """Calibration inputs read one file at a time (never all held), re-iterable for a second pass;
    each image made into a model input by the model's input contract."""

    def __init__(self, files: list[Path], input_name: str, contract) -> None:
        if not files:
            raise UserError("no calibration images")
        self.files, self.input_name, self.contract = list(files), input_name, contract
        self.size = contract.input_size
        self.desc = "calibrating"

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for path in tqdm(self.files, desc=self.desc, unit="img", leave=False):
            yield {self.input_name: load_image(path, self.contract)[None]}


class _OneFeed:
    """A CalibrationDataReader that hands onnxruntime exactly one input dict."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed = feed

    def get_next(self):
        feed, self._feed = self._feed, None
        return feed


def ort_method(method: str):
    """onnxruntime's CalibrationMethod for a ``--calib-method`` name."""
    from onnxruntime.quantization.calibrate import CalibrationMethod

    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}; got {method!r}")
    return {
        "entropy": CalibrationMethod.Entropy,
        "max": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def collect_ranges(prepared_model: Path, images: CalibrationImages, method: str, op_types: list[str], workdir: Path):
    """onnxruntime ``TensorsData`` for ``method`` over ``images``, one image in memory at a time."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, create_calibrator

    def calibrator_for(kind):
        return create_calibrator(
            Path(prepared_model),
            op_types,
            augmented_model_path=str(Path(workdir) / "augmented.onnx"),
            calibrate_method=kind,
            extra_options={},
        )

    if method == "entropy" and entropy_is_full_range():
        ranges = _min_max(calibrator_for(CalibrationMethod.MinMax), images)
        return TensorsData(
            CalibrationMethod.Entropy,
            {
                name: TensorData(lowest=_scalar(data.range_value[0]), highest=_scalar(data.range_value[1]))
                for name, data in ranges.items()
            },
        )
    calibrator = calibrator_for(ort_method(method))
    if method == "max":
        return _min_max(calibrator, images)
    return _histogram_ranges(calibrator, images, method)


def entropy_is_full_range() -> bool:
    """Whether onnxruntime's entropy calibration (its default settings, as used here) gives the
    min-max ranges. Its KL search tries thresholds from num_quantized_bins/2 to num_bins/2 bins
    out from zero: with 128 and 128 that is one candidate, the whole histogram, which it then
    clips to the tensor's min and max. Read from its defaults, so a change there shows here."""
    import inspect

    from onnxruntime.quantization.calibrate import EntropyCalibrater

    defaults = inspect.signature(EntropyCalibrater.__init__).parameters
    return defaults["num_bins"].default // 2 <= defaults["num_quantized_bins"].default // 2


def _scalar(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(())


def _min_max(calibrator, images: CalibrationImages):
    """Each image's in-graph ReduceMin / ReduceMax folded into the running range (exact)."""
    for feed in images:
        calibrator.collect_data(_OneFeed(feed))
    return calibrator.compute_data()


def _histogram_ranges(calibrator, images: CalibrationImages, method: str):
    histograms = StreamingHistograms(
        symmetric_abs=method == "percentile" and calibrator.symmetric, num_bins=calibrator.num_bins
    )
    names = [o.name for o in calibrator.infer_session.get_outputs()]
    wanted = [i for i, name in enumerate(names) if name in calibrator.tensors_to_calibrate]
    for stage, label in ((histograms.observe_range, "ranges"), (histograms.count, "histograms")):
        images.desc = f"calibrating ({label})"
        for feed in images:
            outputs = calibrator.infer_session.run(None, feed)
            for i in wanted:
                stage(names[i], outputs[i])
                outputs[i] = None  # let go of each tensor as soon as it is counted
        histograms.end_pass()
    calibrator.collector = histograms.as_collector(calibrator)
    return calibrator.compute_data()


class StreamingHistograms:
    """Per-tensor histograms identical to onnxruntime's ``HistogramCollector`` fed all images at once.

    ``symmetric_abs``: histogram of |x| over [min |x|, max |x|] (percentile, symmetric);
    otherwise of x over [-t, t] with t = max |x| (entropy). Either range is known only after
    every image was seen, hence ``observe_range`` on all images, ``end_pass``, then ``count``.
    """

    def __init__(self, *, symmetric_abs: bool, num_bins: int) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be positive; got {num_bins}")
        self.symmetric_abs, self.num_bins = symmetric_abs, num_bins
        self.low: dict[str, np.ndarray] = {}  # running min and max of x
        self.high: dict[str, np.ndarray] = {}
        self.abs_low: dict[str, np.ndarray] = {}  # and of |x| (symmetric_abs)
        self.abs_high: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.edges: dict[str, np.ndarray] = {}
        self._layout: dict[str, tuple] = {}

    def observe_range(self, name: str, values: np.ndarray) -> None:
        flat = np.asarray(values).ravel()
        _fold(self.low, name, np.nanmin(flat), min)
        _fold(self.high, name, np.nanmax(flat), max)
        if self.symmetric_abs:
            magnitude = np.absolute(flat)
            _fold(self.abs_low, name, magnitude.min(), min)
            _fold(self.abs_high, name, magnitude.max(), max)

    def end_pass(self) -> None:
        """Fix each tensor's bin range the way onnxruntime derives it from all the data."""
        if self._layout:
            return
        for name in self.low:
            if self.symmetric_abs:
                self._layout[name] = (self.abs_low[name], self.abs_high[name])
            else:
                bound = np.array(max(abs(self.low[name]), abs(self.high[name])), dtype=self.low[name].dtype)
                self._layout[name] = (-bound, bound)

    def count(self, name: str, values: np.ndarray) -> None:
        flat = np.asarray(values).ravel()
        if self.symmetric_abs:
            flat = np.absolute(flat)
        hist, edges = np.histogram(flat, self.num_bins, range=self._layout[name])
        if name in self.counts:
            self.counts[name] += hist
        else:
            self.counts[name], self.edges[name] = hist, edges.astype(flat.dtype)

    def as_collector(self, calibrator):
        """onnxruntime's collector holding these histograms, ready for its threshold search."""
        from onnxruntime.quantization.calibrate import HistogramCollector

        collector = HistogramCollector(
            method=calibrator.method,
            symmetric=calibrator.symmetric,
            num_bins=calibrator.num_bins,
            num_quantized_bins=calibrator.num_quantized_bins,
            percentile=calibrator.percentile,
            scenario=calibrator.scenario,
        )
        for name, hist in self.counts.items():
            entry = (hist, self.edges[name], self.low[name], self.high[name])
            collector.histogram_dict[name] = entry if self.symmetric_abs else (*entry, self._layout[name][1])
        return collector


def _fold(store: dict, name: str, value, pick) -> None:
    store[name] = value if name not in store else pick(store[name], value)


# What calibration holds besides the images' tensors, in units of the FP32 model's weights: the
# model, its shape-inferred and augmented copies, the calibration session and the quantizer's
# copy (fitted to the measured peaks of resnet18 at 224 and resnet101 at 448).
MODEL_COPIES = 5


def calibration_bytes(footprint: ModelFootprint, method: str, op_types: list[str], scale: float = 1.0) -> float:
    """Memory calibration adds to this process; ``scale``: (new side / model side)² for another size."""
    from wscnet.memory import FORWARD_PER_LARGEST

    keeps_tensors = method == "percentile" or (method == "entropy" and not entropy_is_full_range())
    held = footprint.tensor_bytes(op_types) if keeps_tensors else 0
    return MODEL_COPIES * footprint.weights + scale * (FORWARD_PER_LARGEST * footprint.largest + held)


def check_calibration_memory(model, method: str, op_types: list[str], size: int, what: str) -> None:
    """Stop before calibrating, with the setting that would fit, when calibration will not fit."""
    from wscnet.memory import GB, current_rss_bytes, fits, require

    footprint = ModelFootprint(model)
    need = calibration_bytes(footprint, method, op_types)
    if fits(need):
        return
    if method != "max" and fits(calibration_bytes(footprint, "max", op_types)):
        total = current_rss_bytes() + calibration_bytes(footprint, "max", op_types)
        fix = f"--calib-method max would fit (about {total / GB:.1f} GB)"
    else:
        sides = [
            s
            for s in range(size - 32, 31, -32)
            if fits(calibration_bytes(footprint, method, op_types, (s / size) ** 2))
        ]
        fix = f"--img-size {sides[0]} would fit" if sides else "no input size fits: use a larger machine"
    require(f"INT8 calibration of {what} ({method})", need, fix)
