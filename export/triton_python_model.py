"""The python-backend model ``export --format triton`` copies into the repository as ``1/model.py``.

It runs inside tritonserver's python backend (``triton_python_backend_utils`` exists only there):
the exported ONNX beside it, through ONNX Runtime on the CPU. All requests of one dynamic batch go
through ONNX Runtime as one batch, and each request gets its own rows back. Tensors cross by DLPack:
the backend's ``as_numpy`` / ``Tensor(name, array)`` are built for numpy 1 and read wrong bytes
under numpy 2.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

OUTPUTS = ("probs", "det_scores", "sentiment_map")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        threads = int(config["parameters"]["intra_op_threads"]["string_value"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]

    def execute(self, requests):
        batches = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        outputs = self.session.run(list(OUTPUTS), {self.input_name: np.concatenate(batches)})
        responses, start = [], 0
        for batch in batches:
            rows = slice(start, start + len(batch))
            tensors = [
                pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(out[rows]))
                for name, out in zip(OUTPUTS, outputs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += len(batch)
        return responses
