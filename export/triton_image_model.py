"""The two python-backend steps of the ``wscnet_image`` ensemble, copied as ``1/model.py`` into
``wscnet_preprocess`` and ``wscnet_postprocess``; the config parameter ``step`` says which one runs.

Both use the runtime's own code, copied beside this file by ``export --format triton`` (``runtime/``):
``runtime.framing.Framing`` turns a picture into the model's input views with the one frame → tensor
function and averages the views' scores, exactly as ``runtime.Model.predict`` does. Tensors cross by
DLPack (the wheel's python backend reads and writes wrong bytes through numpy under numpy 2).
"""

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the runtime copied beside this file, before any other on the path

import cv2  # noqa: E402

import runtime  # noqa: E402
from runtime.framing import Framing  # noqa: E402
from runtime.metadata import ModelMetadata  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        if Path(runtime.__file__).resolve().parent != HERE / "runtime":
            raise RuntimeError(f"imported runtime from {runtime.__file__}, not the copy in {HERE}")
        config = json.loads(args["model_config"])
        props = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.framing = Framing(ModelMetadata.from_props(props, config["name"]))
        self.step = props["step"]
        self.input_names = [tensor["name"] for tensor in config["input"]]

    def execute(self, requests):
        run = self.preprocess if self.step == "preprocess" else self.postprocess
        return [run(request) for request in requests]

    def preprocess(self, request):
        """Encoded picture bytes → the model's V input views (an error response if they do not decode)."""
        name = self.input_names[0]
        data = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name))
        try:
            frame = cv2.imdecode(np.ascontiguousarray(data), cv2.IMREAD_COLOR) if data.size else None
        except cv2.error:  # a header OpenCV refuses outright (absurd sizes, ...)
            frame = None
        if frame is None:
            message = f"{name}: {data.size} bytes that are not a picture OpenCV can decode (JPEG, PNG, ...)"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
        views = self.framing.new_batch(1)
        self.framing.to_tensor(frame, views, 0)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor.from_dlpack("views", views)])

    def postprocess(self, request):
        """The V views' outputs → one answer: scores averaged over the views, the first view's map."""
        outputs = {name: np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name)) for name in self.input_names}
        probs, det_scores, sentiment_map = self.framing.combine(outputs, 0)
        answer = {
            "label_index": np.array([np.argmax(probs)], dtype=np.int32),
            "probabilities": probs,
            "detection_probabilities": det_scores,
            "sentiment_map": sentiment_map,
        }
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor.from_dlpack(name, np.array(value)) for name, value in answer.items()]
        )  # copies
