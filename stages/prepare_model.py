"""DVC stage: the configured base model -> models/base (safetensors + tokenizer + chat template)."""

from complexif.llm.model_source import prepare_base_model
from complexif.runtime import run_stage


def main(params, run) -> None:
    m = params.model
    info = prepare_base_model(
        m.source, params.paths.model_dir("base"), m.gguf_file, m.revision, m.dtype
    )
    run.log_dict(info, "model_info.json")
    run.log_metrics({"n_parameters": float(info["n_parameters"])})


if __name__ == "__main__":
    run_stage("prepare_model", main, ["model"])
