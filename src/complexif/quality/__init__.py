"""Data quality gates: Great Expectations suites (``expectations/*.json``) run on each artifact."""

from complexif.quality.derived import DERIVED_COLUMNS, add_derived_columns
from complexif.quality.gate import (
    MAX_ROWS_SHOWN,
    ExpectationOutcome,
    GateFailed,
    GateResult,
    UnexpectedRow,
    gate,
    validate,
)
from complexif.quality.suites import (
    ExpectationSpec,
    SuiteError,
    SuiteSpec,
    available_suites,
    load_suite,
    to_gx_suite,
)

__all__ = [
    "DERIVED_COLUMNS",
    "MAX_ROWS_SHOWN",
    "ExpectationOutcome",
    "ExpectationSpec",
    "GateFailed",
    "GateResult",
    "SuiteError",
    "SuiteSpec",
    "UnexpectedRow",
    "add_derived_columns",
    "available_suites",
    "gate",
    "load_suite",
    "to_gx_suite",
    "validate",
]
