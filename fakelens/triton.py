"""The Triton backend: each model's contract from its config on the server, and a concurrent fan-out over gRPC."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from fakelens.backends import Answer, FanOut, ModelError, Stopwatch, chunks
from fakelens.contract import Contract

# Retry a lost connection within a second rather than gRPC's default back-off
# (up to 2 minutes), so the gateway recovers as soon as Triton is back.
CHANNEL_ARGS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000), ("grpc.max_send_message_length", 2**30),
                ("grpc.max_receive_message_length", 2**30)]
# The model index and contracts are read again after this long: a Triton restarted between two requests
# (the channel reconnects without an error reaching us) or a model reloaded in explicit mode may serve
# other models, versions or verdict rules.
CONTRACT_TTL_S = 30.0


def _model_error(exc: InferenceServerException) -> ModelError:
    status = str(exc.status() or "")
    if "DEADLINE_EXCEEDED" in status:
        return ModelError("timeout", f"no answer within the timeout ({exc.message()})")
    if "UNAVAILABLE" in status:
        return ModelError("triton_unavailable", f"Triton is unreachable ({exc.message()})")
    return ModelError("model_error", exc.message() or str(exc))


class Triton:
    """One per process; safe to share between request threads.

    The models are those in Triton's repository index: the model repository is the one
    place that lists them. The index and each model's contract are cached for CONTRACT_TTL_S,
    and forgotten at once when Triton is unreachable. `on_index` is told the model names each
    time the index is read (the gateway zeroes its per-model metrics).
    """

    def __init__(self, url: str, timeout: float, on_index: Callable[[tuple[str, ...]], None] = lambda names: None):
        self.url, self.timeout, self.on_index = url, timeout, on_index
        self._client: grpcclient.InferenceServerClient | None = None
        self._models: list[str] | None = None
        self._contracts: dict[str, Contract] = {}
        self._read_at = 0.0  # when the cache was last emptied
        self._lock = threading.Lock()
        # Shared by the request threads: room for a few fan-outs of a few models at once.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="triton")

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        """The gRPC client, made on first use."""
        with self._lock:  # created lazily: gunicorn forks workers after importing the app
            if self._client is None:
                self._client = grpcclient.InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
            return self._client

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self.client, method)(*args, client_timeout=self.timeout, **kwargs)
        except InferenceServerException as exc:
            err = _model_error(exc)
            if err.reason == "triton_unavailable":
                with self._lock:
                    self._forget()
            raise err from None

    def _forget(self) -> None:
        """Drop the cached index and contracts; call with the lock held."""
        self._models = None
        self._contracts.clear()
        self._read_at = time.monotonic()

    def _expire(self) -> None:
        """Forget the index and contracts once they are CONTRACT_TTL_S old; call with the lock held."""
        if time.monotonic() - self._read_at > CONTRACT_TTL_S:
            self._forget()

    @property
    def models(self) -> list[str]:
        """The model names in Triton's repository index, loaded or not; raises ModelError when unreachable."""
        with self._lock:
            self._expire()
            if self._models is not None:
                return self._models
        index = self._call("get_model_repository_index", as_json=True).get("models", [])
        names = sorted({m["name"] for m in index})
        self.on_index(tuple(names))
        with self._lock:
            self._models = names
        return names

    def contract(self, model: str) -> Contract:
        """The model's contract from its config on the server, cached for CONTRACT_TTL_S."""
        with self._lock:
            self._expire()
            if model in self._contracts:
                return self._contracts[model]
        c = Contract.from_config(self._call("get_model_config", model).config)
        with self._lock:
            self._contracts[model] = c
        return c

    def answer(self, model: str, pixels: np.ndarray) -> Answer:
        """P(FAKE) for each image of a uint8 [N, 32, 32, 3] batch, in chunks of the model's max batch."""
        clock = Stopwatch()
        c = self.contract(model)
        if tuple(pixels.shape[1:]) != c.input_dims:
            raise ModelError("model_error", f"{model} takes {list(c.input_dims)}, got {list(pixels.shape[1:])}")
        out, version = [], ""
        for chunk in chunks(pixels, c.max_batch_size):
            inp = grpcclient.InferInput(c.input_name, list(chunk.shape), c.input_dtype)
            inp.set_data_from_numpy(chunk)
            res = self._call("infer", model, [inp], outputs=[grpcclient.InferRequestedOutput(c.output_name)])
            out.append(res.as_numpy(c.output_name)[:, c.fake_index])
            version = res.get_response().model_version
        return Answer(np.concatenate(out), clock.ms, version, c.parameters)

    def fan_out(self, pixels: np.ndarray) -> FanOut:
        """Ask every model at once."""
        # self.models raises ModelError if Triton is unreachable
        futures = {m: self._pool.submit(self.answer, m, pixels) for m in self.models}
        # Metadata + inference are each bounded by the timeout; this bounds the whole wait.
        wait(futures.values(), timeout=3 * self.timeout + 1)
        answers, errors = {}, {}
        for model, fut in futures.items():
            if not fut.done():
                errors[model] = ModelError("timeout", f"{model} did not answer in time")
            elif isinstance(fut.exception(), ModelError):
                errors[model] = fut.exception()
            elif fut.exception() is not None:
                errors[model] = ModelError("model_error", f"{model}: {fut.exception()}")
            else:
                answers[model] = fut.result()
        return FanOut(answers, errors)

    def readiness(self) -> dict[str, bool]:
        """{model: ready}; raises ModelError if Triton itself is unreachable or not live.

        Server readiness is not asked: Triton reports "not ready" as soon as any
        model is unloaded, and per-model answers say more.
        """
        if not self._call("is_server_live"):
            raise ModelError("triton_unavailable", "Triton is up but not live")
        return {m: bool(self._call("is_model_ready", m)) for m in self.models}
