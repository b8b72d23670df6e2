"""Stage 1 of the NAB parameter search: a seeded random search, judged leave-one-category-out.

    uv run python -m runtime.detection.bench_search NAB_DIR [--settings 250] [--seed 0]
        [--quiet 0,50,100,200,400] [--json OUT]

Draws `--settings` likelihood settings from a seeded generator (forecaster set, combine rule,
level/error/history weights, window, tail, cooldown, minimum history, seasonal EWMA and the
peak gate `lik_surprise`), crosses each with every `lik_quiet` value, and runs each candidate
through the real engine over the NAB files (`runtime.detection.nab.raw_scores`). It then reports
the in-sample best and the honest figure: for each category the candidate best on the *other*
categories, scored on the held-out one, pooled. The draws are sequential, so a run with
`--settings 10` scores exactly the first 10 settings of a 250-setting run. Stage 2 (the small
neighbourhood grid around the shipped point) is `python -m runtime.detection.nab`.
Each candidate is one full NAB run (~13 s on an idle box): 250 x 5 candidates take hours.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

FORECASTERS = ("last", "level", "season", "week")
QUIET_VALUES = (0, 50, 100, 200, 400)


def draw_settings(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` random `unknown_signals` likelihood settings; the first k of any count are the same."""
    rng = random.Random(seed)

    def log_uniform(low: float, high: float) -> float:
        return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.3g}")

    settings = []
    for _ in range(count):
        chosen = tuple(f for f in FORECASTERS if rng.random() < 0.5) or ("level",)
        settings.append(
            {
                "lik_forecasters": list(chosen),
                "lik_combine": rng.choice(("mean", "min", "best")),
                "lik_level_alpha": log_uniform(0.005, 0.1),
                "lik_error_alpha": log_uniform(0.0005, 0.02),
                "lik_history_alpha": log_uniform(0.0002, 0.005),
                "lik_window": rng.choice((5, 10, 20, 40, 80)),
                "lik_tail": log_uniform(1e-6, 1e-2),
                "lik_cooldown": rng.choice((100, 200, 500, 1000)),
                "lik_min_history": rng.choice((100, 200, 400, 800)),
                "lik_season_alpha": rng.choice((0.1, 0.3, 0.5, 1.0)),
                "lik_surprise": rng.choice((0.0, 0.0, 1.0, 1.2, 1.5)),
            }
        )
    return settings


def candidates(settings: list[dict[str, Any]], quiet: tuple[int, ...] = QUIET_VALUES) -> list[dict[str, Any]]:
    """Every setting crossed with every `lik_quiet` value."""
    return [setting | {"lik_quiet": q} for setting in settings for q in quiet]


def _categories(names: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(name.split("/", 1)[0], []).append(name)
    return out


def judge(cands: list[dict[str, Any]], results: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """In-sample best, and the pooled held-out score of choosing the best on the other categories."""
    from runtime.detection.nab import normalised

    names = list(results[0])
    totals = [normalised(r, names) or -math.inf for r in results]
    best = max(range(len(cands)), key=totals.__getitem__)
    held_raw = 0.0
    folds = {}
    for category, members in _categories(names).items():
        others = [n for n in names if n not in members]
        pick = max(range(len(cands)), key=lambda i: normalised(results[i], others) or -math.inf)
        held_raw += sum(results[pick][n]["raw"]["standard"] for n in members)
        score = normalised(results[pick], members)
        folds[category] = {"chosen": pick, "held_out": None if score is None else round(score, 2)}
    windows = sum(results[0][n]["windows"] for n in names)
    return {
        "candidates": len(cands),
        "in_sample_best": round(totals[best], 2),
        "in_sample_best_setting": cands[best],
        "held_out_pooled": round(100.0 * (held_raw + windows) / (2.0 * windows), 2),
        "folds": folds,
    }


def _quiet_values(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--quiet: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--quiet: {text!r} needs non-negative integers")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the search; print one line per candidate and the judgement. Exit 2 on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m runtime.detection.bench_search", description=__doc__.split("\n")[0]
    )
    parser.add_argument("nab_dir", type=Path, help="NAB data folder (with score.py)")
    parser.add_argument("--settings", type=_positive, default=250, help="random likelihood settings to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument("--quiet", type=_quiet_values, default=QUIET_VALUES, help="lik_quiet values, e.g. 0,50,100")
    parser.add_argument("--json", type=Path, default=None, help="write the candidates' scores and the judgement here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.nab_dir / "score.py").is_file():
        parser.error(f"{args.nab_dir}: not a NAB data folder (no score.py)")
    from runtime.detection.nab import normalised, raw_scores

    cands = candidates(draw_settings(args.settings, args.seed), args.quiet)
    results = []
    started = time.perf_counter()
    for i, cand in enumerate(cands):
        files = raw_scores(args.nab_dir, cand)
        results.append(files)
        print(f"{i:4d} {normalised(files, list(files)):6.2f}  {json.dumps(cand, sort_keys=True)}", flush=True)
    verdict = judge(cands, results)
    verdict["seconds"] = round(time.perf_counter() - started, 1)
    verdict["settings"] = args.settings
    verdict["seed"] = args.seed
    verdict["quiet"] = list(args.quiet)
    print(
        f"\n{verdict['candidates']} candidates: in-sample best {verdict['in_sample_best']:.2f}; "
        f"best-on-the-other-categories, held out, pooled: {verdict['held_out_pooled']:.2f}"
    )
    for category, fold in verdict["folds"].items():
        print(f"  {category:24s} held-out {fold['held_out']!s:>6s}  chosen #{fold['chosen']}")
    if args.json is not None:
        totals = [round(normalised(r, list(r)) or 0.0, 2) for r in results]
        report = verdict | {"candidate_settings": cands, "candidate_scores": totals}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
