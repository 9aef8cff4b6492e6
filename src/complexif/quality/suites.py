"""Expectation suites as small, reviewable JSON files, and their translation to GX 1.x objects.

Suite format (``expectations/<name>.json``)::

    {
      "name": "dpo",
      "description": "Preference pairs fed to DPO.",
      "derived": ["n_constraints", "chosen_passes_all"],
      "parameters": {"max_constraints": 5},
      "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "n_constraints", "min_value": 1,
                    "max_value": {"$PARAMETER": "max_constraints"}},
         "meta": {"why": "...", "show": ["chosen_failed_ids"]},
         "severity": "critical"}
      ]
    }

``type`` is any registered GX expectation (snake_case, as in GX's own suite JSON); ``kwargs`` are
passed to its pydantic model unchanged, so GX validates them. ``{"$PARAMETER": name}`` is GX's
suite-parameter syntax: defaults come from ``parameters`` and callers may override them.
``derived`` names check columns computed by :mod:`complexif.quality.derived` before validation.
Every expectation must say *why* it exists (``meta.why``), because that text is what a failing
gate prints; ``meta.show`` optionally lists columns printed beside each offending row (e.g. which
constraints failed). ``severity`` "warning"/"info" failures are reported but do not block.

GX itself is imported lazily: it costs ~5 s to import and loading/linting a suite must not pay it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    import great_expectations as gx

PARAMETER_KEY = "$PARAMETER"
ORDER_META_KEY = "suite_index"


class SuiteError(ValueError):
    """A suite file is missing, malformed, or names an unknown expectation / derived column."""


class ExpectationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    # Failing a "warning"/"info" expectation is reported but does not fail the gate.
    severity: Literal["critical", "warning", "info"] = "critical"

    @field_validator("meta")
    @classmethod
    def _why_is_required(cls, meta: dict[str, Any]) -> dict[str, Any]:
        why = meta.get("why")
        if not isinstance(why, str) or not why.strip():
            raise ValueError("meta.why is required: it is the explanation a failing gate prints")
        show = meta.get("show", [])
        if not isinstance(show, list) or not all(isinstance(c, str) for c in show):
            raise ValueError("meta.show must be a list of column names")
        return meta

    @property
    def why(self) -> str:
        return str(self.meta["why"])

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column")
        return col if isinstance(col, str) else None

    def parameter_names(self) -> set[str]:
        return {
            v[PARAMETER_KEY]
            for v in self.kwargs.values()
            if isinstance(v, dict) and isinstance(v.get(PARAMETER_KEY), str)
        }


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    derived: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    expectations: list[ExpectationSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> SuiteSpec:
        # Local import: derived imports this module for SuiteSpec.
        from complexif.quality.derived import DERIVED_COLUMNS

        unknown = [d for d in self.derived if d not in DERIVED_COLUMNS]
        if unknown:
            raise ValueError(
                f"unknown derived column(s) {unknown}; known: {sorted(DERIVED_COLUMNS)}"
            )
        missing = sorted(
            {p for e in self.expectations for p in e.parameter_names()} - set(self.parameters)
        )
        if missing:
            # Every parameter needs a default so a suite always validates stand-alone.
            raise ValueError(f"$PARAMETER(s) without a default in 'parameters': {missing}")
        return self


def suite_path(name: str, expectations_dir: str | os.PathLike[str]) -> Path:
    return Path(expectations_dir) / f"{name}.json"


def available_suites(expectations_dir: str | os.PathLike[str]) -> list[str]:
    return sorted(p.stem for p in Path(expectations_dir).glob("*.json"))


def load_suite(name: str, expectations_dir: str | os.PathLike[str]) -> SuiteSpec:
    """Read and validate ``<expectations_dir>/<name>.json`` (``paths.expectations_dir``);
    errors name the file and the problem."""
    path = suite_path(name, expectations_dir)
    if not path.is_file():
        raise SuiteError(
            f"{path}: suite {name!r} not found (available: {available_suites(expectations_dir)})"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: invalid suite: {exc}") from exc
    if spec.name != name:
        # The file name is how stages refer to a suite; a mismatch means a copy-paste error.
        raise SuiteError(f"{path}: suite name {spec.name!r} does not match file name {name!r}")
    return spec


def quiet_gx_logging() -> None:
    """Keep GX's import-time INFO chatter (hundreds of lines) out of stage logs.

    Only applies when nobody configured the ``great_expectations`` logger explicitly.
    """
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)


def to_gx_suite(spec: SuiteSpec) -> gx.ExpectationSuite:
    """Build a GX ExpectationSuite; GX's pydantic models reject bad kwargs here, not mid-run."""
    quiet_gx_logging()
    import great_expectations as gx
    from great_expectations.expectations.registry import get_expectation_impl

    expectations = []
    for i, exp in enumerate(spec.expectations):
        try:
            impl = get_expectation_impl(exp.type)
            # The index travels in meta because GX returns results in its own (metric) order.
            meta = {**exp.meta, ORDER_META_KEY: i}
            expectations.append(impl(**exp.kwargs, meta=meta, severity=exp.severity))
        except Exception as exc:  # GX raises its own and pydantic-v1 errors; unify them.
            raise SuiteError(f"suite {spec.name!r}, expectation #{i} ({exp.type}): {exc}") from exc
    # Passing the list to the constructor (not add_expectation) needs no active data context.
    suite = gx.ExpectationSuite(
        name=spec.name, expectations=expectations, meta={"description": spec.description}
    )
    if len(suite.expectations) != len(expectations):
        # The constructor logs and drops expectations it cannot process; never validate less.
        raise SuiteError(f"suite {spec.name!r}: GX dropped expectations while building the suite")
    return suite
