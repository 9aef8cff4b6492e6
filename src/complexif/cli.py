"""Command line: ``complexif <group> <command> [options]``.

Each group is added by a ``register(groups)`` function that receives the group subparsers, sets
``group_parser`` (for help) on its group parser and ``handler`` (a function taking the parsed
args and returning an exit code) on each command parser. To add a group, write such a function
and append it to ``GROUP_REGISTRARS``.

Expected problems (bad files, bad arguments) print one ``error:`` line and exit 2; tracebacks
are for bugs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from complexif.config import ConfigError
from complexif.constraints.errors import ConstraintError
from complexif.evaluation.cli import register_followbench, register_infobench
from complexif.evaluation.ifeval import MissingResponseError
from complexif.io import DataError, read_text
from complexif.tracking.cli import register_runs

Groups = Any  # argparse's private _SubParsersAction
Registrar = Callable[[Groups], None]

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


# --------------------------------------------------------------------------------------------
# complexif ifeval ...


def _format_metrics(metrics: dict[str, Any]) -> str:
    lines = [
        f"prompt-level strict accuracy:      {metrics['prompt_level_strict_acc']:.4f}",
        f"instruction-level strict accuracy: {metrics['inst_level_strict_acc']:.4f}",
        f"prompt-level loose accuracy:       {metrics['prompt_level_loose_acc']:.4f}",
        f"instruction-level loose accuracy:  {metrics['inst_level_loose_acc']:.4f}",
        f"({metrics['num_prompts']} prompts, {metrics['num_instructions']} instructions)",
        "",
    ]
    for title, key in (("instruction type", "per_instruction"), ("category", "per_category")):
        rows = metrics[key]
        width = max(len(title), *(len(name) for name in rows))
        lines.append(f"{title:<{width}}  {'strict':>6}  {'loose':>6}  {'n':>4}")
        lines.append("-" * (width + 22))
        for name, row in rows.items():
            lines.append(
                f"{name:<{width}}  {row['strict']:>6.3f}  {row['loose']:>6.3f}  {row['count']:>4}"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _ifeval_score(args: argparse.Namespace) -> int:
    from complexif.evaluation import ifeval

    inputs = ifeval.load_input_data(args.input_data)
    responses = ifeval.load_responses(args.responses)
    result = ifeval.score(inputs, responses, missing=args.missing)
    paths = ifeval.write_results(result, args.output_dir)
    sys.stdout.write(_format_metrics(result.metrics))
    counts = result.coverage
    print(f"responses: {counts}")
    if counts is not None and counts.missing:
        print(f"note: {counts.missing} prompts had no response and were scored as empty")
    if counts is not None and counts.extra:
        print(f"note: {counts.extra} responses are for no prompt of {args.input_data}: ignored")
    print(f"wrote {paths['strict']}, {paths['loose']} and {paths['metrics']}")
    return EXIT_OK


def _ifeval_check(args: argparse.Namespace) -> int:
    from complexif.constraints import verify

    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise ConstraintError(
            f"--kwargs is not valid JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    if not isinstance(kwargs, dict):
        raise ConstraintError("--kwargs must be a JSON object")
    response = args.response
    if args.response_file is not None:
        response = read_text(args.response_file)
    if response is None:
        raise ConstraintError("give --response or --response-file")
    ok = verify.check(args.instruction_id, kwargs, response, prompt=args.prompt, loose=args.loose)
    print("PASS" if ok else "FAIL")
    return EXIT_OK if ok else EXIT_FAIL


def register_ifeval(groups: Groups) -> None:
    from complexif.evaluation.ifeval import DEFAULT_INPUT_DATA

    group = groups.add_parser("ifeval", help="IFEval scoring and constraint checks")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="command", metavar="<command>")

    score = commands.add_parser(
        "score", help="score responses on IFEval; write strict/loose results and metrics"
    )
    score.add_argument(
        "--input-data",
        type=Path,
        default=DEFAULT_INPUT_DATA,
        help="IFEval prompts JSONL (default: %(default)s)",
    )
    score.add_argument(
        "--responses", type=Path, required=True, help="JSONL with 'prompt' and 'response'"
    )
    score.add_argument("--output-dir", type=Path, required=True, help="where results go")
    score.add_argument(
        "--missing",
        choices=("error", "empty"),
        default="error",
        help="a prompt without a response: fail (default) or score it as empty",
    )
    score.set_defaults(handler=_ifeval_score)

    check = commands.add_parser("check", help="check one response against one instruction")
    check.add_argument("--instruction-id", required=True, help="e.g. punctuation:no_comma")
    check.add_argument("--kwargs", default="{}", help="instruction arguments as a JSON object")
    text = check.add_mutually_exclusive_group(required=True)
    text.add_argument("--response", help="the response text")
    text.add_argument("--response-file", type=Path, help="read the response from a file")
    check.add_argument("--prompt", default="", help="the prompt (unused by the 25 IFEval types)")
    check.add_argument("--loose", action="store_true", help="official loose mode")
    check.set_defaults(handler=_ifeval_check)


# --------------------------------------------------------------------------------------------
# complexif params ...


def _params_apply(args: argparse.Namespace) -> int:
    from complexif.presets import apply_preset

    out = apply_preset(args.preset, args.params, args.output)
    print(f"applied {args.preset} -> {out}")
    return EXIT_OK


def _params_show(args: argparse.Namespace) -> int:
    from complexif.config import load_params

    print(json.dumps(load_params(args.params).model_dump(mode="json"), indent=2))
    return EXIT_OK


def _params_snapshot(args: argparse.Namespace) -> int:
    from complexif.publish import snapshot

    for path in snapshot(args.out_dir, args.params, args.lock):
        print(f"wrote {path}")
    return EXIT_OK


def register_params(groups: Groups) -> None:
    group = groups.add_parser("params", help="presets and validation of params.yaml")
    commands = group.add_subparsers(dest="command", metavar="<command>")
    apply = commands.add_parser(
        "apply", help="merge a preset (partial params file) into params.yaml"
    )
    apply.add_argument("preset", type=Path, help="e.g. presets/full.yaml")
    apply.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="(default: %(default)s)"
    )
    apply.add_argument("--output", type=Path, default=None, help="write here instead of --params")
    apply.set_defaults(handler=_params_apply)
    snap = commands.add_parser(
        "snapshot",
        help="after `dvc repro`: copy params.yaml and dvc.lock (the exact recipe) next to the "
        "results it produced",
    )
    snap.add_argument("out_dir", type=Path, help="e.g. results/cpu")
    snap.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="(default: %(default)s)"
    )
    snap.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="(default: %(default)s)")
    snap.set_defaults(handler=_params_snapshot)
    show = commands.add_parser(
        "show", help="validate params.yaml (every problem on its own line) and print it as JSON"
    )
    show.add_argument("--params", type=Path, default=Path("params.yaml"))
    show.set_defaults(handler=_params_show)


# --------------------------------------------------------------------------------------------
# complexif serve


def _serve(args: argparse.Namespace) -> int:
    from complexif.config import PIPELINE_MODELS, load_params
    from complexif.llm.faults import FaultConfig

    params = load_params(args.params)
    cfg = params.serve
    model = args.model or cfg.model
    name = args.name or cfg.name or model
    host = args.host or cfg.host
    port = cfg.port if args.port is None else _port(args.port)
    try:
        faults = FaultConfig(
            rate_429=args.fault_429,
            rate_500=args.fault_500,
            rate_timeout=args.fault_timeout,
            rate_malformed=args.fault_malformed,
            rate_slow=args.fault_slow,
            seed=args.fault_seed,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    key_env = args.api_key_env or cfg.api_key_env
    api_key = _serve_api_key(key_env, params.llm.env_file)
    if args.backend != "echo":
        from complexif.llm.transformers_backend import resolve_device
        from complexif.tracking.models import download_model_dir, is_registry_uri

        if is_registry_uri(model):
            try:
                path = download_model_dir(model)
            except Exception as exc:  # an unknown name, version or alias; an unreachable store
                print(f"error: {model}: {exc}", file=sys.stderr)
                return EXIT_ERROR
        else:
            path = params.paths.resolve_model(model)
        if model in PIPELINE_MODELS and not path.is_dir():
            print(f"error: model directory {path} not found; run dvc repro first", file=sys.stderr)
            return EXIT_ERROR
        try:
            device = resolve_device(args.device or params.train.device)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    from complexif.llm import responders, server

    # Bound before the model loads: a taken port or a refused address fails in a second.
    sock = server.bind(host, port)
    try:
        if not server.is_loopback(sock):
            if api_key is None:
                print(
                    f"error: {host} ({server.bound_ip(sock)}) is reachable from other machines; "
                    f"set an API key in ${key_env} (serve.api_key_env, or .env) to serve there, "
                    "or bind 127.0.0.1",
                    file=sys.stderr,
                )
                return EXIT_ERROR
            print(
                f"warning: serving on {host}, reachable from other machines: every request "
                f"needs the key in ${key_env}; HTTP is unencrypted, so put TLS in front of it "
                "on an untrusted network",
                file=sys.stderr,
            )
        access = server.Access.for_bind(host, server.bound_ip(sock), cfg.allowed_hosts, api_key)
        responder: server.Responder
        if args.backend == "echo":
            latency_s = args.latency_ms / 1000.0
            responder, fingerprint = responders.FixedLatencyResponder(latency_s), "echo"
        else:
            from complexif.llm.transformers_backend import TransformersLLM

            batch_size = cfg.batch_size if args.batch_size is None else args.batch_size
            engine = args.engine or cfg.engine
            precision = args.precision or cfg.precision
            llm = TransformersLLM(
                path, batch_size, device, name=name, engine=engine, precision=precision
            )
            if llm.engine == "continuous":
                responder = responders.ContinuousResponder(llm, cfg.context_tokens)
            else:
                wait_ms = cfg.max_wait_ms if args.max_wait_ms is None else args.max_wait_ms
                count = responders.prompt_counter(llm)
                responder = responders.MicroBatcher(llm, batch_size, wait_ms, count)
            fingerprint = llm.fingerprint
        app = server.build_app(responder, name, fingerprint, faults, config=cfg, access=access)
        server.run(app, sock, host)
    finally:
        sock.close()
    return EXIT_OK


def _port(text: str) -> int:
    """``--port``, checked here so that a bad one is the CLI's one-line error (argparse would
    print its usage too)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigError(f"--port {text!r}: a port is an integer in 0-65535 (0 picks a free one)")
    return value


def _serve_api_key(env_name: str, env_file: str) -> str | None:
    """The serving key from the environment, else from the .env file; None if unset or empty."""
    from complexif.config import env_var_name_problem
    from complexif.llm.factory import read_secret

    if problem := env_var_name_problem(env_name):
        raise ConfigError(f"--api-key-env: {problem[1]}")
    return read_secret(env_name, env_file)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register_serve(groups: Groups) -> None:
    group = groups.add_parser(
        "serve",
        help="serve a model as an OpenAI-compatible chat-completions API",
        description="Serve a model at http://HOST:PORT/v1 (chat completions, models, health, "
        "stats). Defaults come from params.yaml serve:; flags override them.",
    )
    group.add_argument("--params", type=Path, default=Path("params.yaml"))
    group.add_argument(
        "--model",
        help="base/sft/dpo (models/<name>), a registered model (models:/complexif-dpo@best, "
        "models:/complexif-sft/3; from MLFLOW_TRACKING_URI), a directory or a hub id",
    )
    group.add_argument("--name", help="model name clients ask for (default: --model as given)")
    group.add_argument(
        "--host", help="bind address; beyond loopback (0.0.0.0, a LAN address) a key is required"
    )
    group.add_argument("--port", help="0-65535; 0 picks a free port (printed at start)")
    group.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the key every request must send as "
        "'Authorization: Bearer <key>' (default: serve.api_key_env)",
    )
    group.add_argument(
        "--batch-size", type=_positive_int, help="sequences decoded together (continuous: slots)"
    )
    group.add_argument("--engine", choices=["continuous", "static"], help="local model engine")
    group.add_argument("--precision", choices=["auto", "float32", "bfloat16"])
    group.add_argument(
        "--max-wait-ms", type=float, help="static engine: how long a batch waits to fill up"
    )
    group.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="default: params.yaml train.device"
    )
    group.add_argument(
        "--backend",
        choices=("transformers", "echo"),
        default="transformers",
        help="echo: no model, answer with the last user message after --latency-ms",
    )
    group.add_argument("--latency-ms", type=float, default=0.0, help="echo backend's latency")
    faults = group.add_argument_group("fault injection (per-request probabilities)")
    for kind in ("429", "500", "timeout", "malformed", "slow"):
        faults.add_argument(f"--fault-{kind}", type=_rate, default=0.0, metavar="RATE")
    faults.add_argument("--fault-seed", type=int, default=0)
    # No subcommands: the group parser is itself the command.
    group.set_defaults(group_parser=group, handler=_serve)


# --------------------------------------------------------------------------------------------
# complexif models merge


def _models_merge(args: argparse.Namespace) -> int:
    import torch

    from complexif.config import load_params
    from complexif.llm.stored_model import write_merged
    from complexif.tracking.models import download_model_dir, is_registry_uri

    source = args.source
    params = load_params(args.params)
    dtype = args.dtype or params.train.sft.merged_dtype
    if is_registry_uri(source):
        path = download_model_dir(source)
    else:
        path = params.paths.resolve_model(source)
    if not path.is_dir():
        print(f"error: model directory {path} not found", file=sys.stderr)
        return EXIT_ERROR
    write_merged(path, args.out, getattr(torch, dtype))
    print(f"wrote {source} as whole {dtype} weights to {args.out}")
    return EXIT_OK


def register_models(groups: Groups) -> None:
    group = groups.add_parser("models", help="stored and registered models")
    sub = group.add_subparsers(dest="action", required=True)
    merge = sub.add_parser(
        "merge",
        help="write a model (an adapter stack, a registered model) as whole weights",
        description="A trained model is stored as LoRA adapters over models/base; tools that "
        "load only whole weights (vllm serve, the hub) get a merged copy from this.",
    )
    merge.add_argument("source", help="sft/dpo, a model directory, or models:/NAME@ALIAS")
    merge.add_argument("out", type=Path, help="the directory to write (replaced atomically)")
    merge.add_argument(
        "--dtype", choices=["bfloat16", "float32"], help="default: params train.sft.merged_dtype"
    )
    merge.add_argument("--params", type=Path, default=Path("params.yaml"))
    merge.set_defaults(handler=_models_merge)


# --------------------------------------------------------------------------------------------
# complexif cache ...


def _open_cache(args: argparse.Namespace):
    from complexif.config import load_params
    from complexif.llm.cache import ResponseCache

    path = args.path or Path(load_params(args.params).llm.cache.path)
    if not path.exists():
        raise DataError(f"{path}: no response cache there yet (nothing has been cached)")
    return ResponseCache(path)


def _cache_stats(args: argparse.Namespace) -> int:
    import datetime

    with _open_cache(args) as cache:
        stats = cache.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK

    def when(ts: float) -> str:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")

    print(f"{stats['path']}: {stats['entries']} answers, {stats['bytes'] / 1e6:.1f} MB")
    for model, row in stats["models"].items():  # type: ignore[union-attr]
        # Rows from before the cache recorded its writers belong to no run on record.
        runs = f" by {row['runs']} recorded runs" if row["runs"] else ""
        print(
            f"  {model}: {row['entries']} answers{runs}, "
            f"{when(row['oldest'])} .. {when(row['newest'])}"
        )
    return EXIT_OK


def _cache_clear(args: argparse.Namespace) -> int:
    with _open_cache(args) as cache:
        n = cache.clear(args.model)
    which = f"model {args.model!r}" if args.model else "all models"
    print(f"deleted {n} cached answers ({which}) from {cache.path}")
    return EXIT_OK


def register_cache(groups: Groups) -> None:
    group = groups.add_parser("cache", help="inspect or clear the LLM response cache")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="command", metavar="<command>")
    for name, handler, help_ in (
        ("stats", _cache_stats, "answers cached per model, size, time span"),
        ("clear", _cache_clear, "delete cached answers (all, or one model's)"),
    ):
        cmd = commands.add_parser(name, help=help_)
        cmd.add_argument("--params", type=Path, default=Path("params.yaml"))
        cmd.add_argument("--path", type=Path, help="the cache file (default: llm.cache.path)")
        cmd.set_defaults(handler=handler)
        if name == "stats":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            cmd.add_argument("--model", help="only this model's answers")


GROUP_REGISTRARS: list[Registrar] = [
    register_ifeval,
    register_followbench,
    register_infobench,
    register_params,
    register_serve,
    register_models,
    register_cache,
    register_runs,
]


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="complexif", description="ComplexIF: complex instruction following pipeline"
    )
    groups = parser.add_subparsers(dest="group", metavar="<group>")
    for register in GROUP_REGISTRARS:
        register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # A group without a command (or nothing at all): show the relevant help.
        getattr(args, "group_parser", parser).print_help()
        return EXIT_ERROR
    try:
        return handler(args)
    except (DataError, ConfigError, ConstraintError, MissingResponseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
