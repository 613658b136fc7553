"""The model backends (fakelens/backends.py, triton.py, torchscript.py) and the contract they read: no server."""
from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

import fakelens.triton
from fakelens.backends import Answer, FanOut, ModelError, chunks
from fakelens.contract import Contract, ContractError, read_repository, rule_of
from fakelens.triton import CONTRACT_TTL_S, Triton
from tests.conftest import ROOT
from tests.fakes import RULE, FakeTriton, config


def triton_with(client) -> Triton:
    triton = Triton("127.0.0.1:1", 1.0)
    triton._client = client
    return triton


def test_the_contract_is_read_from_the_config_and_the_fake_column_from_its_classes():
    c = Contract.from_config(config("m", 16, "FAKE,REAL", ensemble_weight="0.5"))
    assert c == Contract("m", "INPUT__0", "UINT8", (32, 32, 3), "OUTPUT__0", 0, 16,
                         {"classes": "FAKE,REAL", "ensemble_weight": "0.5"})
    assert Contract.from_config(config()).fake_index == 1


@pytest.mark.parametrize("classes", ["", "REAL,AI"])
def test_a_config_that_does_not_name_the_fake_column_is_refused(classes):
    with pytest.raises(ContractError, match="classes"):
        Contract.from_config(config(classes=classes))


def test_the_committed_repository_states_every_contract_and_one_rule():
    contracts = read_repository(ROOT / "model_repository")
    assert sorted(contracts) == ["baseline_cnn", "resnet50", "tuned_cnn"]
    assert {(c.input_name, c.input_dtype, c.input_dims, c.output_name, c.fake_index) for c in contracts.values()} == {
        ("INPUT__0", "UINT8", (32, 32, 3), "OUTPUT__0", 1)}
    rule = rule_of({m: c.parameters for m, c in contracts.items()})
    assert sorted(rule.weights) == sorted(contracts) and sum(rule.weights.values()) == pytest.approx(1)


def test_an_empty_repository_is_an_error(tmp_path):
    with pytest.raises(ContractError, match="no models"):
        read_repository(tmp_path)


def test_chunks_split_a_batch_by_the_models_max_batch():
    x = np.arange(20 * 2).reshape(20, 2)
    assert [len(c) for c in chunks(x, 8)] == [8, 8, 4]
    assert [len(c) for c in chunks(x, 0)] == [1] * 20  # no batching: one at a time
    assert np.array_equal(np.concatenate(list(chunks(x, 8))), x)


def test_each_models_latency_is_the_calls_own_duration_every_chunk_included():
    """It once reported the process clock (a loop variable took the start time's name): 2,145,127 ms for 67."""
    triton = triton_with(FakeTriton(config(max_batch=8), delay_s=0.02))
    triton.contract("m")  # contracts cached, as after a first request
    start = time.perf_counter()
    answer = triton.answer("m", np.zeros((20, 32, 32, 3), np.uint8))
    wall_ms = (time.perf_counter() - start) * 1000
    assert 3 * 20 <= answer.latency_ms <= wall_ms  # three chunks of at most 8, 20 ms each
    assert answer.p_fake.shape == (20,) and answer.version == "3"


def test_the_fan_out_asks_every_model_and_reads_each_ones_fake_column():
    client = FakeTriton(config("a", classes="FAKE,REAL", ensemble_weight="1", verdict_rule=RULE),
                        config("b", max_batch=2, ensemble_weight="1", verdict_rule=RULE), p=0.8)
    fanout = triton_with(client).fan_out(np.zeros((3, 32, 32, 3), np.uint8))
    assert sorted(fanout.answers) == ["a", "b"] and fanout.errors == {}
    assert np.allclose(fanout.answers["a"].p_fake, 0.8) and np.allclose(fanout.answers["b"].p_fake, 0.8)
    assert sorted(client.calls) == [("a", 3), ("b", 1), ("b", 2)]
    assert fanout.answers["a"].parameters["verdict_rule"] == RULE


def test_a_model_that_fails_is_reported_by_name_and_reason():
    class Broken(FakeTriton):
        def infer(self, model, inputs, **kw):
            if model == "bad":
                raise InferenceServerException("boom", status="StatusCode.INTERNAL")
            if model == "slow":
                raise InferenceServerException("late", status="StatusCode.DEADLINE_EXCEEDED")
            return super().infer(model, inputs, **kw)

    fanout = triton_with(Broken(config("bad"), config("good"), config("slow"))).fan_out(np.zeros((1, 32, 32, 3), np.uint8))
    assert sorted(fanout.answers) == ["good"]
    assert {m: (e.reason, str(e)) for m, e in fanout.errors.items()} == {
        "bad": ("model_error", "boom"), "slow": ("timeout", "no answer within the timeout (late)")}


def test_pixels_of_the_wrong_shape_are_a_model_error():
    fanout = triton_with(FakeTriton(config())).fan_out(np.zeros((1, 64, 64, 3), np.uint8))
    assert fanout.errors["m"].reason == "model_error" and "takes [32, 32, 3], got [64, 64, 3]" in str(fanout.errors["m"])


def test_the_index_is_told_to_whoever_zeroes_per_model_metrics():
    seen = []
    triton = Triton("127.0.0.1:1", 1.0, on_index=seen.append)
    triton._client = FakeTriton(config("b"), config("a"))
    assert triton.models == ["a", "b"] and triton.models == ["a", "b"]
    assert seen == [("a", "b")]  # once: the index is cached


def test_contract_cache_is_safe_while_a_lost_connection_clears_it():
    """A request thread reads a cached contract while another finds Triton gone and forgets them all."""
    class GoneAfterLoad(FakeTriton):
        def is_server_live(self, **_):
            raise InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")

    class SlowLookup(dict):  # widens the gap between "is it cached?" and "use it" so the race shows at once
        def __contains__(self, key):
            found = super().__contains__(key)
            time.sleep(0.002)
            return found

    triton = triton_with(GoneAfterLoad(config()))
    triton._contracts = SlowLookup()
    stop = threading.Event()

    def lose_connection():
        while not stop.is_set():
            with pytest.raises(ModelError, match="unreachable"):
                triton.readiness()

    other = threading.Thread(target=lose_connection)
    other.start()
    try:
        for _ in range(100):
            assert triton.contract("m").max_batch_size == 8
    finally:
        stop.set()
        other.join()


def test_contracts_are_read_again_after_their_time(monkeypatch):
    """A Triton restarted between two requests (no error reaches the gateway) serves a new verdict rule."""
    client = FakeTriton(config(verdict_rule="old"))
    clock = [1000.0]  # the module's clock, moved by hand: no real waiting, no race with a busy machine
    monkeypatch.setattr(fakelens.triton, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    triton = triton_with(client)
    assert triton.models == ["m"] and triton.contract("m").parameters["verdict_rule"] == "old"
    client.configs["m"] = config(verdict_rule="new")
    clock[0] += CONTRACT_TTL_S - 1
    assert triton.contract("m").parameters["verdict_rule"] == "old"  # cached
    clock[0] += 2
    assert triton.contract("m").parameters["verdict_rule"] == "new"


def test_readiness_asks_each_model():
    class HalfReady(FakeTriton):
        def is_model_ready(self, model, **_):
            return model == "a"

    assert triton_with(HalfReady(config("a"), config("b"))).readiness() == {"a": True, "b": False}


def test_the_in_process_backend_answers_as_the_served_models_do():
    from fakelens.torchscript import TorchScript

    backend = TorchScript(ROOT / "model_repository", batch_size=7)
    x = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    fanout = backend.fan_out(x)
    assert isinstance(fanout, FanOut) and sorted(fanout.answers) == sorted(backend.contracts) and fanout.errors == {}
    for name, answer in fanout.answers.items():
        assert isinstance(answer, Answer) and answer.p_fake.shape == (10,) and answer.version == "1"
        import torch

        with torch.inference_mode():
            direct = backend.models[name](torch.from_numpy(x)).numpy()[:, 1]
        assert np.allclose(answer.p_fake, direct, atol=1e-6)
        assert answer.parameters == backend.contracts[name].parameters
    assert backend.readiness() == {m: True for m in backend.contracts}
