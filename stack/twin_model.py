"""Triton python-backend model that serves a TorchScript file on CPU.

The embedded stack copies this file as `<model>/1/model.py` next to a link to
the canonical `model_repository/<model>/1/model.pt`, so the CPU twin runs the
very file the stock GPU image serves with its libtorch backend.
"""
import json
import os
import time

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

# At small batches oneDNN can be much slower than PyTorch's own kernels (bench/results/tuning/
# has the figures). Above these sizes oneDNN wins by far, so only these are measured. Batch 1 is among them: a model
# with flip averaging runs it as a batch of 2.
SMALL_BATCHES = range(1, 9)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # One thread per instance: three models on a 2-core machine must not fight over cores.
        torch.set_num_threads(int(params.get("torch_threads", "1")))
        self.input = config["input"][0]
        self.output = config["output"][0]
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location="cpu").eval()
        self._check_contract()
        self.without_onednn = self._batches_faster_without_onednn()
        print(f"{config['name']}: batch sizes run without oneDNN: {sorted(self.without_onednn)}", flush=True)

    def _zeros(self, n: int) -> np.ndarray:
        """A batch of n all-zero inputs, shaped and typed as config.pbtxt declares."""
        dtype = pb_utils.triton_string_to_numpy(self.input["data_type"])
        return np.zeros([n] + [int(d) for d in self.input["dims"]], dtype)

    def _check_contract(self):
        """Refuse to load (loudly) if the TorchScript file does not honour config.pbtxt."""
        probe = self._zeros(2)
        with torch.inference_mode():
            for _ in range(3):  # also warms TorchScript's profiling executor: the first calls are slow
                out = self.model(torch.from_numpy(probe)).numpy()
        want_shape = (2, *[int(d) for d in self.output["dims"]])
        want_dtype = pb_utils.triton_string_to_numpy(self.output["data_type"])
        if out.shape != want_shape or out.dtype != want_dtype:
            raise pb_utils.TritonModelException(
                f"model.pt returns {out.dtype}{list(out.shape)} for input {probe.dtype}{list(probe.shape)}, "
                f"but config.pbtxt declares {want_dtype.__name__}{list(want_shape)}")

    def _batches_faster_without_onednn(self) -> set:
        """Batch sizes at which this model, on this CPU, takes < 80% of the CPU time without oneDNN."""
        def cpu_seconds(x):
            self.model(x)  # not timed: TorchScript re-optimises on a new shape's first calls
            best = float("inf")
            for _ in range(3):
                start = time.process_time()  # CPU time: the other models load at the same moment
                self.model(x)
                best = min(best, time.process_time() - start)
            return best

        faster = set()
        with torch.inference_mode():
            for n in SMALL_BATCHES:
                x = torch.from_numpy(self._zeros(n))
                with_onednn = cpu_seconds(x)
                with torch.backends.mkldnn.flags(enabled=False):
                    if cpu_seconds(x) < 0.8 * with_onednn:
                        faster.add(n)
        return faster

    def execute(self, requests):
        # The dynamic batcher hands us several requests: run them as one batch.
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input["name"]).as_numpy() for r in requests]
        x = torch.from_numpy(np.concatenate(arrays))
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=len(x) not in self.without_onednn):
            out = self.model(x).numpy()
        responses, start = [], 0
        for a in arrays:
            tensor = pb_utils.Tensor(self.output["name"], out[start:start + len(a)])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += len(a)
        return responses
