"""Run an expectation suite on a DataFrame with Great Expectations and turn the result into a gate.

One ephemeral GX context per process is reused: creating the context and registering the pandas
datasource is the slow part; each validation after that costs tens of milliseconds plus the
derived-column verification. Failures name the offending rows by their ``id`` so a broken record
can be found in the JSONL with grep.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from complexif.io import atomic_open
from complexif.quality.derived import add_derived_columns
from complexif.quality.suites import (
    ORDER_META_KEY,
    load_suite,
    quiet_gx_logging,
    to_gx_suite,
)

if TYPE_CHECKING:
    from great_expectations.datasource.fluent.batch_request import BatchDefinition
    from great_expectations.datasource.fluent.interfaces import Batch

logger = logging.getLogger(__name__)

MAX_ROWS_SHOWN = 10
_MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class UnexpectedRow:
    """One offending row: its id (or ``row <position>`` when there is no id column) and value."""

    row: str
    value: Any
    # Extra columns the suite asked to show beside the value (``meta.show``), e.g. which
    # constraints a response failed.
    context: dict[str, Any] = field(default_factory=dict)
    # The id value (or index label) used to find the row again; not part of messages.
    key: Any = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        extra = "".join(f"; {k}={_short(v)}" for k, v in self.context.items())
        return f"{self.row} ({_short(self.value)}{extra})"


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    kwargs: dict[str, Any]
    why: str
    severity: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    # At most MAX_ROWS_SHOWN; unexpected_count says how many there were in all.
    unexpected_rows: tuple[UnexpectedRow, ...] = ()
    observed_value: Any = None
    details: Any = None
    exception: str | None = None

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column")
        return col if isinstance(col, str) else None

    @property
    def blocking(self) -> bool:
        return not self.success and self.severity == "critical"

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        lines = [f"- {self.type}({args}) [{self.severity}]", f"    why: {self.why}"]
        if self.exception:
            lines.append(f"    error: {self.exception}")
        if self.unexpected_count:
            total = f" of {self.element_count}" if self.element_count is not None else ""
            shown = ", ".join(r.describe() for r in self.unexpected_rows)
            more = self.unexpected_count - len(self.unexpected_rows)
            suffix = f", ... (+{more} more)" if more > 0 else ""
            lines.append(f"    {self.unexpected_count}{total} rows unexpected: {shown}{suffix}")
        elif self.observed_value is not None and not self.exception:
            lines.append(f"    observed: {_short(self.observed_value, limit=300)}")
        if self.details and not self.success:
            lines.append(f"    details: {_short(self.details, limit=300)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GateResult:
    suite: str
    artifact: str | None
    success: bool
    n_rows: int
    outcomes: tuple[ExpectationOutcome, ...]
    duration_s: float
    parameters: dict[str, Any] = field(default_factory=dict)
    result_path: Path | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.blocking]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and not o.blocking]

    def failed_types(self) -> list[str]:
        return [o.type for o in self.failures]

    def summary(self) -> str:
        where = f" on {self.artifact}" if self.artifact else ""
        head = f"Quality gate {self.suite!r}{where} ({self.n_rows} rows): "
        if self.success:
            head += f"passed {len(self.outcomes)} expectations"
        else:
            head += f"{len(self.failures)} of {len(self.outcomes)} expectations FAILED"
        if self.warnings:
            head += f", {len(self.warnings)} warning(s)"
        body = [o.describe() for o in self.failures + self.warnings]
        if self.result_path is not None:
            body.append(f"full result: {self.result_path}")
        return "\n".join([head, *body])


class GateFailed(Exception):
    """Raised by :func:`gate`; ``str()`` is the readable summary, ``.result`` the details."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.summary())
        self.result = result


class _GxRuntime:
    """The process-wide ephemeral context, one pandas datasource, one dataframe asset per suite."""

    def __init__(self) -> None:
        quiet_gx_logging()
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            # No data-docs site: results go to our own JSON, not rendered HTML.
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            # tqdm bars from every validation would drown stage logs.
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.datasource = self.context.data_sources.add_pandas(name="complexif")
        self._batch_definitions: dict[str, BatchDefinition] = {}

    def batch(self, asset_name: str, df: pd.DataFrame) -> Batch:
        definition = self._batch_definitions.get(asset_name)
        if definition is None:
            asset = self.datasource.add_dataframe_asset(name=asset_name)
            definition = asset.add_batch_definition_whole_dataframe("whole")
            self._batch_definitions[asset_name] = definition
        return definition.get_batch(batch_parameters={"dataframe": df})


_runtime: _GxRuntime | None = None
# GX contexts are not thread-safe; validations are short, so serialise them.
_runtime_lock = threading.Lock()


def _get_runtime() -> _GxRuntime:
    global _runtime
    if _runtime is None:
        _runtime = _GxRuntime()
    return _runtime


def validate(
    df: pd.DataFrame,
    suite: str,
    expectations_dir: str | os.PathLike[str],
    result_path: str | os.PathLike[str] | None = None,
    id_column: str = "id",
    *,
    parameters: Mapping[str, Any] | None = None,
    artifact: str | None = None,
) -> GateResult:
    """Validate ``df`` against ``expectations/<suite>.json``; never raises on data failures.

    ``parameters`` override the suite's ``$PARAMETER`` defaults; ``artifact`` (e.g. the JSONL
    path) only labels messages. The full GX result is written atomically to ``result_path``.
    """
    start = time.perf_counter()
    spec = load_suite(suite, expectations_dir)
    unknown = set(parameters or {}) - set(spec.parameters)
    if unknown:
        raise ValueError(f"suite {suite!r} has no parameter(s) {sorted(unknown)}")
    params = {**spec.parameters, **(parameters or {})}
    checked = add_derived_columns(df, spec)
    gx_suite = to_gx_suite(spec)

    has_ids = id_column in checked.columns
    if not has_ids:
        logger.warning(
            "suite %s: no %r column, offending rows are named by position", suite, id_column
        )
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE",
        "partial_unexpected_count": MAX_ROWS_SHOWN,
    }
    if has_ids:
        result_format["unexpected_index_column_names"] = [id_column]

    with _runtime_lock:
        batch = _get_runtime().batch(spec.name, checked)
        gx_result = batch.validate(
            gx_suite, result_format=result_format, expectation_parameters=params
        )
    raw = gx_result.to_json_dict()

    ordered = sorted(
        raw["results"],
        key=lambda r: (r.get("expectation_config") or {}).get("meta", {}).get(ORDER_META_KEY, 0),
    )
    lookup = _RowLookup(checked, id_column if has_ids else None)
    outcomes = tuple(_outcome(r, lookup) for r in ordered)
    result = GateResult(
        suite=spec.name,
        artifact=artifact,
        success=not any(o.blocking for o in outcomes),
        n_rows=len(df),
        outcomes=outcomes,
        duration_s=time.perf_counter() - start,
        parameters=params,
        result_path=Path(result_path) if result_path is not None else None,
    )
    if result_path is not None:
        _write_result(Path(result_path), result, raw)
    for warn in result.warnings:
        logger.warning("quality gate %s (non-blocking):\n%s", spec.name, warn.describe())
    logger.debug("suite %s validated %d rows in %.3fs", spec.name, len(df), result.duration_s)
    return result


def gate(
    df: pd.DataFrame,
    suite: str,
    expectations_dir: str | os.PathLike[str],
    result_path: str | os.PathLike[str] | None = None,
    id_column: str = "id",
    *,
    parameters: Mapping[str, Any] | None = None,
    artifact: str | None = None,
) -> GateResult:
    """:func:`validate`, then raise :class:`GateFailed` unless every critical expectation passed."""
    result = validate(
        df,
        suite,
        expectations_dir,
        result_path,
        id_column,
        parameters=parameters,
        artifact=artifact,
    )
    if not result.success:
        raise GateFailed(result)
    logger.info(
        "quality gate %s passed%s: %d rows, %d expectations, %.2fs",
        result.suite,
        f" on {artifact}" if artifact else "",
        result.n_rows,
        len(result.outcomes),
        result.duration_s,
    )
    return result


class _RowLookup:
    """Find an offending row again (by id, else by index label) to show its ``meta.show`` columns."""

    def __init__(self, df: pd.DataFrame, id_column: str | None) -> None:
        self.df = df
        self.id_column = id_column
        self._by_id: pd.DataFrame | None = None

    def context(self, key: Any, columns: list[str]) -> dict[str, Any]:
        columns = [c for c in columns if c in self.df.columns]
        if not columns:
            return {}
        try:
            if self.id_column is None:
                row = self.df.loc[key]
            else:
                if self._by_id is None:
                    # Duplicate ids: the first occurrence stands in for all of them.
                    self._by_id = self.df.drop_duplicates(self.id_column).set_index(self.id_column)
                row = self._by_id.loc[key]
        except (KeyError, TypeError, ValueError):
            return {}
        return {c: row[c] for c in columns}


def _outcome(raw: Mapping[str, Any], lookup: _RowLookup) -> ExpectationOutcome:
    config = raw.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
    meta = config.get("meta") or {}
    res = raw.get("result") or {}
    rows = _unexpected_rows(res, kwargs.get("column"), lookup.id_column)
    show = meta.get("show") or []
    if show and rows:
        rows = tuple(
            replace(r, context=lookup.context(r.key, show)) if r.key is not None else r
            for r in rows
        )
    return ExpectationOutcome(
        type=str(config.get("type")),
        kwargs=kwargs,
        why=str(meta.get("why", "")),
        severity=str(config.get("severity") or "critical"),
        success=bool(raw.get("success")),
        element_count=res.get("element_count"),
        unexpected_count=res.get("unexpected_count"),
        unexpected_rows=rows,
        observed_value=res.get("observed_value"),
        details=res.get("details"),
        exception=_exception_message(raw.get("exception_info")),
    )


def _unexpected_rows(
    res: Mapping[str, Any], column: Any, id_column: str | None
) -> tuple[UnexpectedRow, ...]:
    indices = res.get("unexpected_index_list")
    values = res.get("unexpected_list") or res.get("partial_unexpected_list") or []
    rows: list[UnexpectedRow] = []
    if indices:
        for i, entry in enumerate(indices[:MAX_ROWS_SHOWN]):
            if isinstance(entry, Mapping) and id_column is not None:
                key = entry.get(id_column)
                row = f"{id_column}={key}"
                if column in entry:
                    value = entry[column]
                elif column == id_column:  # uniqueness of the id itself
                    value = entry.get(id_column)
                else:  # multi-column expectations list every compared column
                    value = {k: v for k, v in entry.items() if k != id_column}
            else:
                key = entry
                row = f"row {entry}"
                value = values[i] if i < len(values) else None
            rows.append(UnexpectedRow(row=row, value=value, key=key))
    else:
        rows = [UnexpectedRow(row="?", value=v) for v in values[:MAX_ROWS_SHOWN]]
    return tuple(rows)


def _exception_message(info: Any) -> str | None:
    """GX reports exceptions either flat or keyed by metric id, depending on where they arose."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    messages = [
        str(v.get("exception_message"))
        for v in info.values()
        if isinstance(v, Mapping) and v.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def _short(value: Any, limit: int = _MAX_VALUE_CHARS) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# What GX's result records about this particular run (when the batch was loaded, which run):
# the report is a git-tracked DVC output, and these would change it on every run of equal data.
_RUN_SPECIFIC_META = ("run_id", "validation_time")
_RUN_SPECIFIC_BATCH_MARKERS = ("ge_load_time",)


def _without_run_specifics(raw: Mapping[str, Any]) -> dict[str, Any]:
    stable = dict(raw)
    meta = dict(stable.get("meta") or {})
    for key in _RUN_SPECIFIC_META:
        meta.pop(key, None)
    if isinstance(meta.get("batch_markers"), Mapping):
        markers = dict(meta["batch_markers"])
        for key in _RUN_SPECIFIC_BATCH_MARKERS:
            markers.pop(key, None)
        meta["batch_markers"] = markers
    if "meta" in stable:
        stable["meta"] = meta
    return stable


def _write_result(path: Path, result: GateResult, raw: Mapping[str, Any]) -> None:
    # No duration: the report must not change between runs on equal data; the time goes to
    # MLflow (runtime.gate_records logs gate.<suite>.seconds).
    payload = {
        "suite": result.suite,
        "artifact": result.artifact,
        "success": result.success,
        "n_rows": result.n_rows,
        "parameters": result.parameters,
        "failures": [asdict(o) for o in result.failures],
        "warnings": [asdict(o) for o in result.warnings],
        "validation_result": _without_run_specifics(raw),
    }
    with atomic_open(path) as fh:
        # default=str: row values may hold numpy scalars or other objects GX left unconverted.
        json.dump(payload, fh, ensure_ascii=False, indent=2, default=str)
        fh.write("\n")
    logger.debug("wrote validation result %s", os.fspath(path))
