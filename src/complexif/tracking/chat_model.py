"""The MLflow pyfunc flavour of a ComplexIF model: chat in, greedy (or sampled) answers out.

A registered model's artifacts are the stored model directory (an adapter stack whose base is
another registered model, or whole weights: see :mod:`complexif.llm.stored_model`), so loading
``models:/complexif-dpo@best`` fetches the adapters and the base they name, and answers with the
same engine and precision as the pipeline's evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc

MODEL_ARTIFACT = "model"
# The file MLflow runs to build the model object when it loads a registered version.
ENTRY_POINT = Path(__file__).with_name("chat_model_entry.py")


def model_config(settings: ChatSettings) -> dict[str, Any]:
    return asdict(settings)


def signature(settings: ChatSettings):
    """Prompts in, answers out, and the generation params a predict call may set (MLflow drops
    params a signature does not declare)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", settings.max_new_tokens),
                ParamSpec("temperature", "double", 0.0),
                ParamSpec("top_p", "double", 1.0),
                ParamSpec("seed", "long", 0),
            ]
        ),
    )


@dataclass(frozen=True)
class ChatSettings:
    """How the loaded model generates unless a predict call's params say otherwise."""

    engine: str
    precision: str
    batch_size: int
    max_new_tokens: int
    device: str


class ChatModel(mlflow.pyfunc.PythonModel):
    """``predict`` takes prompts (a list of strings, or a DataFrame with a ``prompt`` column of
    strings or a ``messages`` column of chat messages) and returns one answer per prompt.
    ``params``: ``max_new_tokens``, ``temperature``, ``top_p``, ``seed``.

    Logged as code (:data:`ENTRY_POINT`, MLflow's models-from-code) with the
    :class:`ChatSettings` as its model config, so nothing of ours is pickled."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self._llm = None

    def load_context(self, context: Any) -> None:
        from complexif.llm.transformers_backend import TransformersLLM
        from complexif.tracking.models import localize

        self.settings = dict(context.model_config)
        s = ChatSettings(**self.settings)
        self._llm = TransformersLLM(
            localize(Path(context.artifacts[MODEL_ARTIFACT])),
            s.batch_size,
            s.device,
            engine=s.engine,
            precision=s.precision,
        )

    @property
    def llm(self):
        return self._llm

    def predict(self, context, model_input, params=None):  # no hints: MLflow would parse them
        from complexif.llm.base import ChatRequest, GenerationParams

        params = params or {}
        gen = GenerationParams(
            max_new_tokens=int(params.get("max_new_tokens", self.settings["max_new_tokens"])),
            temperature=float(params.get("temperature", 0.0)),
            top_p=float(params.get("top_p", 1.0)),
            seed=int(params.get("seed", 0)),
            n=1,
        )
        requests = [
            ChatRequest(id=str(i), messages=tuple(messages), params=gen)
            for i, messages in enumerate(conversations(model_input))
        ]
        return [r.text for r in self._llm.generate(requests, progress=False)]


def conversations(model_input: Any) -> list[list[dict[str, str]]]:
    """The chats to answer, from the input shapes :class:`ChatModel` accepts."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "messages" in model_input.columns:
            return [[dict(m) for m in row] for row in model_input["messages"]]
        if "prompt" in model_input.columns:
            model_input = list(model_input["prompt"])
        elif len(model_input.columns) == 1:  # a list of prompts, as the signature passes it
            model_input = list(model_input.iloc[:, 0])
        else:
            raise ValueError(
                f"input columns {list(model_input.columns)}: expected 'prompt' or 'messages'"
            )
    if isinstance(model_input, str):
        model_input = [model_input]
    chats = []
    for i, item in enumerate(model_input):
        if isinstance(item, str):
            chats.append([{"role": "user", "content": item}])
        elif isinstance(item, dict) and "messages" in item:
            chats.append([dict(m) for m in item["messages"]])
        else:
            raise ValueError(f"input item {i}: a prompt string or {{'messages': [...]}}")
    return chats
