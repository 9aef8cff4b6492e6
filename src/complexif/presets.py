"""Apply a preset (a partial params file) onto params.yaml, keeping its comments and layout."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from complexif.config import ConfigError, Params
from complexif.io import write_text


def _merge_into(node: Any, override: dict[str, Any], where: str) -> None:
    for key, value in override.items():
        if key not in node:
            raise ConfigError(f"{where}{key}: not a params.yaml key")
        # A mapping keyed by numbers (k_distribution) is one value, replaced whole, not merged.
        is_section = isinstance(node[key], dict) and all(isinstance(k, str) for k in node[key])
        if isinstance(value, dict) and is_section:
            _merge_into(node[key], value, f"{where}{key}.")
        else:
            node[key] = value


def apply_preset(
    preset: str | Path, params_path: str | Path = "params.yaml", output: str | Path | None = None
) -> Path:
    """Merge ``preset`` into ``params_path`` and write the result (atomically) to ``output``.

    The merged file is validated against the params schema before anything is written.
    """
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    preset, params_path = Path(preset), Path(params_path)
    base = yaml.load(params_path.read_text(encoding="utf-8"))
    override = YAML(typ="safe").load(preset.read_text(encoding="utf-8")) or {}
    _merge_into(base, override, f"{preset}: ")
    buf = io.StringIO()
    yaml.dump(base, buf)
    text = buf.getvalue()
    try:
        Params.model_validate(YAML(typ="safe").load(text))
    except Exception as exc:  # pydantic's message already names the key
        raise ConfigError(f"{preset}: the merged parameters are invalid:\n{exc}") from None
    out = Path(output) if output else params_path
    write_text(out, text)
    return out
