"""``complexif followbench score`` and ``complexif infobench score``: score any model's answers
file the way the evaluate stage does, the judge taken from params.yaml (evaluate.judge)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from complexif.config import Params, load_params
from complexif.io import DataError

Groups = Any  # argparse's private _SubParsersAction


def _params(args: argparse.Namespace, **paths: str | None) -> Params:
    """params.yaml with the paths the flags override; the ledger goes to the output folder."""
    params = load_params(args.params)
    update = {k: v for k, v in paths.items() if v is not None}
    update["ledger_dir"] = str(args.output_dir)
    return params.model_copy(update={"paths": params.paths.model_copy(update=update)})


def _judging(params: Params, stage: str, enabled: bool) -> AbstractContextManager[Any]:
    """The judge's client factory (its ledger in the output folder), or None when off."""
    from complexif.evaluation.judging import judge_session

    return judge_session(stage, params) if enabled else nullcontext(None)


def _require_answers(
    args: argparse.Namespace, benchmark: str, ids: list[str], answers: Mapping[str, str]
) -> None:
    """Refuse, before any judge call, an answers file that misses an item to score."""
    missing = [i for i in ids if i not in answers]
    if missing:
        scope = "all items" if args.all else "the items params.yaml samples (--all: every item)"
        raise DataError(
            f"{args.answers}: no answer for {len(missing)} of {len(ids)} {benchmark} items of "
            f"{scope}; first: {missing[0]}"
        )


def _pct(value: float | None) -> str:
    return "   –" if value is None else f"{100 * value:5.1f}"


def format_followbench(metrics: Mapping[str, Any]) -> str:
    levels = [f"level_{k}" for k in range(1, 6)]
    lines = ["        " + "  ".join(f"   L{k}" for k in range(1, 6)) + "    avg"]
    for key in ("hsr", "ssr"):
        cells = "  ".join(_pct(metrics[key].get(level)) for level in (*levels, "avg"))
        lines.append(f"{key.upper():<6}  {cells}")
    csl = metrics.get("csl")
    lines.append(f"CSL     {'–' if csl is None else f'{csl:.2f}'} (of 5)")
    c = metrics["counts"]
    lines.append(
        f"({c['items']} items: {c['rule_scored']} rule-scored, {c['judged']} judged, "
        f"{c['unparseable']} unparseable, {c.get('not_judged', 0)} not judged)"
    )
    return "\n".join(lines) + "\n"


def _followbench_score(args: argparse.Namespace) -> int:
    from complexif.evaluation.followbench.data import evaluated_items
    from complexif.evaluation.followbench.run import (
        followbench_groups,
        load_answers,
        score_followbench,
    )

    params = _params(args, followbench_dir=args.data_dir and str(args.data_dir))
    groups = followbench_groups(params, all_groups=args.all)
    answers = load_answers(args.answers, groups)
    _require_answers(args, "FollowBench", [item.id for item in evaluated_items(groups)], answers)
    out = Path(args.output_dir)
    with _judging(params, "followbench_score", not args.no_judge) as judge:
        metrics = score_followbench(params, groups, answers, judge, out)
    print(format_followbench(metrics), end="")
    print(f"wrote {out / 'verdicts.jsonl'} and {out / 'metrics.json'}")
    return 0


def format_infobench(metrics: Mapping[str, Any]) -> str:
    c = metrics["counts"]
    lines = [
        f"DRFR       {_pct(metrics.get('drfr'))}",
        f"DRFR easy  {_pct(metrics.get('drfr_easy'))}",
        f"DRFR hard  {_pct(metrics.get('drfr_hard'))}",
        f"({c['items']} items, {c['questions']} questions: {c['judged']} judged, "
        f"{c['unparseable']} unparseable, {c['failed']} failed, {c['unasked']} unasked)",
    ]
    return "\n".join(lines) + "\n"


def _infobench_score(args: argparse.Namespace) -> int:
    from complexif.evaluation.infobench.run import infobench_items, load_answers, score_infobench

    params = _params(args)
    if args.source is not None:
        infobench = params.evaluate.infobench.model_copy(update={"source": str(args.source)})
        evaluate = params.evaluate.model_copy(update={"infobench": infobench})
        params = params.model_copy(update={"evaluate": evaluate})
    items = infobench_items(params, all_items=args.all)
    answers = load_answers(args.answers, items)
    _require_answers(args, "InFoBench", [item.id for item in items], answers)
    out = Path(args.output_dir)
    with _judging(params, "infobench_score", True) as judge:
        metrics = score_infobench(params, items, answers, judge, out)
    print(format_infobench(metrics), end="")
    print(f"wrote {out / 'verdicts.jsonl'} and {out / 'metrics.json'}")
    return 0


def _score_parser(
    groups: Groups, name: str, about: str, detail: str, handler: Callable[..., int]
) -> argparse.ArgumentParser:
    """``complexif <name> score`` with the options every benchmark's scoring shares."""
    group = groups.add_parser(name, help=about)
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="command", metavar="<command>")
    score = commands.add_parser("score", help=f"{detail}; the judge is params.yaml evaluate.judge")
    score.add_argument(
        "--answers",
        type=Path,
        required=True,
        help="JSONL: 'response' with the item's 'id' (FollowBench: or its 'prompt')",
    )
    score.add_argument("--output-dir", type=Path, required=True, help="where results go")
    score.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="(default: %(default)s)"
    )
    score.set_defaults(handler=handler)
    return score


def register_followbench(groups: Groups) -> None:
    score = _score_parser(
        groups,
        "followbench",
        "FollowBench scoring (rules + LLM judge)",
        "score answers on FollowBench: HSR/SSR by level and category, CSL",
        _followbench_score,
    )
    score.add_argument("--no-judge", action="store_true", help="rule-scored items only")
    score.add_argument(
        "--data-dir",
        type=Path,
        help="FollowBench data (default: params.yaml paths.followbench_dir)",
    )
    score.add_argument(
        "--all",
        action="store_true",
        help="every item of evaluate.followbench.categories (default: the params' sample)",
    )


def register_infobench(groups: Groups) -> None:
    score = _score_parser(
        groups,
        "infobench",
        "InFoBench scoring (DRFR with an LLM judge)",
        "judge answers on InFoBench's decomposed questions: DRFR overall, easy and hard",
        _infobench_score,
    )
    score.add_argument(
        "--source",
        help="InFoBench data: a .jsonl/.json file, a folder, or a hub id "
        "(default: params.yaml evaluate.infobench.source)",
    )
    score.add_argument(
        "--all", action="store_true", help="every item (default: evaluate.infobench.subset)"
    )
