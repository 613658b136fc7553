"""The model contract: what each model takes and returns, and the verdict rule it carries.

training/export.py writes it once into each model's config.pbtxt; every backend reads it from there
(the in-process one from the files, the Triton one from the server), so the FAKE column, the tensor
names and the rule are never restated in code.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from fakelens.verdict import Rule

FAKE = "FAKE"


class ContractError(ValueError):
    """A model's config does not say what the backends need to know."""


@dataclass(frozen=True)
class Contract:
    """One model's inputs, outputs and parameters, as its config states them."""
    name: str
    input_name: str
    input_dtype: str  # Triton's datatype name (UINT8)
    input_dims: tuple[int, ...]  # without the batch dimension
    output_name: str
    fake_index: int  # the column of P(FAKE) in the output, from the `classes` parameter
    max_batch_size: int
    parameters: dict[str, str]  # the config's string parameters: classes, ensemble_weight, verdict_rule

    @classmethod
    def from_config(cls, cfg: mc.ModelConfig) -> Contract:
        """ContractError when the config names no FAKE class, or more than one input or output."""
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        classes = params.get("classes", "").split(",")
        if FAKE not in classes or len(cfg.input) != 1 or len(cfg.output) != 1:
            raise ContractError(f"{cfg.name}: the config must name one input, one output and the output's "
                                f"classes (parameter classes, e.g. REAL,FAKE); it has classes={params.get('classes')!r}")
        inp, out = cfg.input[0], cfg.output[0]
        return cls(cfg.name, inp.name, mc.DataType.Name(inp.data_type).removeprefix("TYPE_"), tuple(inp.dims),
                   out.name, classes.index(FAKE), cfg.max_batch_size, params)


def read_config(path: Path) -> mc.ModelConfig:
    """A config.pbtxt as Triton parses it."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def read_repository(repository: Path) -> dict[str, Contract]:
    """{model: contract} of every <model>/config.pbtxt in a model repository."""
    contracts = {p.parent.name: Contract.from_config(read_config(p)) for p in sorted(repository.glob("*/config.pbtxt"))}
    if not contracts:
        raise ContractError(f"no models in {repository} (expected <name>/config.pbtxt)")
    return contracts


def rule_of(parameters: Mapping[str, Mapping[str, str]]) -> Rule:
    """The verdict rule that {model: its parameters} carry; RuleError when they carry none, or different ones."""
    return _parse(tuple((m, p.get("ensemble_weight"), p.get("verdict_rule")) for m, p in sorted(parameters.items())))


@functools.lru_cache(maxsize=16)
def _parse(params: tuple[tuple[str, str | None, str | None], ...]) -> Rule:
    """Parsed once per set of models and their configs, not once per request."""
    return Rule.from_parameters({m: {k: v for k, v in (("ensemble_weight", w), ("verdict_rule", r)) if v is not None}
                                 for m, w, r in params})
