"""fakelens core: reading uploads, asking the models, and deciding the verdict. No web framework here.

    examiner = Examiner()                          # fakelens.examine: pixels, provenance, hashes
    backend = TorchScript(repository)              # or fakelens.triton.Triton(url, timeout)
    judgements = Judge(index).judge([examiner(raw)], backend.fan_out(pixels))

The gateway (gateway/), training and evaluation (training/) and the benchmarks (bench/) are shells around it.
"""
