"""Apply a preset (a partial params file) onto params.yaml, keeping its comments and layout."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from complexif.config import (
    ConfigError,
    Params,
    key_locator,
    kind_of,
    read_yaml_mapping,
    section_fields,
    validation_problems,
)
from complexif.io import write_text

Key = tuple[str, ...]


def _represent_float(representer: Any, value: float) -> Any:
    """Floats as YAML 1.1 reads them too (load_params and DVC must agree): ruamel writes 5e-06,
    which YAML 1.1 takes for a string; 5.0e-06 is a float to both."""
    if value != value or value in (float("inf"), float("-inf")):
        text = ".nan" if value != value else (".inf" if value > 0 else "-.inf")
    else:
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _representer() -> type:
    """ruamel's round-trip representer writing null as ``null`` and floats via
    :func:`_represent_float`; a subclass, so other ruamel users in the process are unaffected."""
    from ruamel.yaml.representer import RoundTripRepresenter

    class Representer(RoundTripRepresenter):
        pass

    Representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    Representer.add_representer(float, _represent_float)
    return Representer


def _merge_into(
    node: Any,
    override: dict[Any, Any],
    model: type[BaseModel],
    path: Key,
    where: Callable[[Key], str],
    set_keys: set[Key],
) -> None:
    """Merge ``override`` into the params section ``node`` of schema ``model``.

    Sections merge key by key; any other value (a number, a list, a mapping keyed by data such
    as ``k_distribution`` or ``llm.prices``) is replaced whole. ``set_keys`` collects the keys
    the preset set, so that a later validation error can point at the preset's line.
    """
    fields = section_fields(model)
    for key, value in override.items():
        sub = (*path, str(key))
        dotted = ".".join(sub)
        if str(key) not in fields or not isinstance(key, str):
            raise ConfigError(f"{where(sub)}: {dotted}: not a params.yaml key")
        inner = fields[key]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where(sub)}: {dotted}: is a section, so the preset must give a mapping "
                    f"of its keys, not {kind_of(value)}"
                )
            if isinstance(node.get(key), dict):
                _merge_into(node[key], value, inner, sub, where, set_keys)
                continue
        node[key] = value
        set_keys.add(sub)


def apply_preset(
    preset: str | Path, params_path: str | Path = "params.yaml", output: str | Path | None = None
) -> Path:
    """Merge ``preset`` into ``params_path`` and write the result (atomically) to ``output``.

    The merged file is validated against the params schema before anything is written, so on
    any error (unreadable or malformed YAML, a list where a section belongs, an unknown key, an
    invalid value) nothing changes; the :class:`ConfigError` names the file and line at fault.
    """
    from ruamel.yaml import YAML

    preset, params_path = Path(preset), Path(params_path)
    override, preset_text = read_yaml_mapping(preset, "a mapping of params sections")
    _, params_text = read_yaml_mapping(params_path)
    in_preset, in_params = key_locator(preset, preset_text), key_locator(params_path, params_text)

    rt = YAML()
    rt.Representer = _representer()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    base = rt.load(params_text)
    set_keys: set[Key] = set()
    _merge_into(base, override, Params, (), in_preset, set_keys)
    buf = io.StringIO()
    rt.dump(base, buf)
    text = buf.getvalue()

    def locate(key: Key) -> str:
        # A bad value the preset set (or one inside a value it replaced) is the preset's fault;
        # anything else was already in the params file.
        for n in range(len(key), 0, -1):
            if key[:n] in set_keys:
                return in_preset(key[:n])
        if key and (below := sorted(k for k in set_keys if k[: len(key)] == key)):
            return in_preset(below[0])
        return in_params(key)

    try:
        # Read back as load_params will read it.
        Params.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_problems(exc, locate))) from None
    out = Path(output) if output else params_path
    write_text(out, text)
    return out
