"""Validation cost: the Great Expectations annotation suites against the same rules in plain pandas.

On 1M annotation rows the suites are timed against the same rules written directly in pandas, side by side
in one run; the ratio is printed as information (validation is judged as part of the release data path,
``bench/release.py``, DESIGN §7). Both sides get the same tables (flattened once, timed apart), evaluate
every rule, count the failing rows and keep a few sample rows; their outcomes must agree rule by rule.
The synthetic batch carries a handful of broken rows of each kind so failures are reported too.
Imports of pandas and Great Expectations happen before timing (a one-off cost of the task process).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

LABELS = ("BRAND", "PRODUCT", "MATERIAL", "COLOR")
TEMPLATES = (
    "I bought the new running shoes from Acme last week and they fit well",
    "Does anyone know if the leather jacket comes in dark brown or only black",
    "The cotton shirt shrank after one wash which was disappointing",
    "Blue suede boots from the outlet store were a bargain this spring",
)
SAMPLE = 5
SMALL_ROWS = 1_000


def tokenize(text: str) -> list[dict[str, Any]]:
    tokens, start = [], 0
    for position, word in enumerate(text.split(" ")):
        tokens.append({"text": word, "start": start, "end": start + len(word), "id": position})
        start += len(word) + 1
    return tokens


def synthetic_batch(rows: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``rows`` NER examples (one or two spans each) with five broken rows of each kind spread through."""
    templates = [(text, tokenize(text)) for text in TEMPLATES]
    every = max(rows // 5, 1)
    for i in range(rows):
        text, tokens = templates[i % len(templates)]
        label = LABELS[(i // 7) % len(LABELS)]
        first = i % (len(tokens) - 3)
        spans = [
            {
                "start": tokens[first]["start"],
                "end": tokens[first + 1]["end"],
                "token_start": first,
                "token_end": first + 1,
                "label": label,
            }
        ]
        if i % 3 == 0:
            last = len(tokens) - 1
            spans.append(
                {
                    "start": tokens[last]["start"],
                    "end": tokens[last]["end"],
                    "token_start": last,
                    "token_end": last,
                    "label": LABELS[i % len(LABELS)],
                }
            )
        task = {
            "text": text,
            "tokens": tokens,
            "spans": spans,
            "answer": "ignore" if i % 40 == 0 else "reject" if i % 9 == 0 else "accept",
            "_input_hash": i,
            "_task_hash": 1_000_000_000 + i,
            "_annotator_id": f"fashion-annotator{i % 5}",
        }
        broken = i % every
        if broken == 1:
            spans[0]["label"] = "FOO"
        elif broken == 2:
            spans[0]["end"] = len(text) + 10
        elif broken == 3:
            spans[0]["start"] += 1
        elif broken == 4:
            task["_task_hash"] = 1_000_000_000 + i - 1
        elif broken == 5:
            del task["answer"]
        yield i + 1, task


def synthetic_disputes() -> list[tuple[int, dict[str, Any]]]:
    return [
        (1, {"input_hash": 7, "label": None, "reasons": ["conflict"], "resolved": True}),
        (2, {"input_hash": 8, "label": None, "reasons": ["conflict", "flagged"]}),
    ]


def _rows(frame, mask, columns: list[str]) -> tuple[int, list[dict[str, Any]]]:
    unexpected = frame[mask]
    return len(unexpected), unexpected[columns].head(SAMPLE).to_dict("records")


def pandas_rules(frames: dict[str, Any], parameters: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The suites' rules written directly in pandas: per rule success, failing rows and sample rows."""
    examples, labels, counts = frames["examples"], frames["labels"], frames["label_counts"]
    spans, disputes = frames["spans"], frames["disputes"]
    example_columns = ["row", "_task_hash", "answer"]
    span_columns = ["row", "_task_hash", "start", "end", "label", "text_length"]
    row_rules: dict[tuple[str, str], Callable[[], tuple[Any, Any, list[str]]]] = {
        ("examples", "task_hash_present"): lambda: (examples, examples["_task_hash"].isna(), example_columns),
        ("examples", "input_hash_present"): lambda: (
            examples,
            examples["_input_hash"].isna(),
            example_columns,
        ),
        ("examples", "input_present"): lambda: (examples, examples["input_key"].isna(), example_columns),
        ("examples", "answer_present"): lambda: (examples, examples["answer"].isna(), example_columns),
        ("examples", "answer_allowed"): lambda: (
            examples,
            examples["answer"].notna() & ~examples["answer"].isin(["accept", "reject", "ignore"]),
            example_columns,
        ),
        ("examples", "task_hash_unique"): lambda: (
            examples,
            examples["_task_hash"].notna() & examples["_task_hash"].duplicated(keep=False),
            example_columns,
        ),
        ("labels", "label_in_scheme"): lambda: (
            labels,
            labels["label"].notna() & ~labels["label"].isin(parameters["label_scheme"]),
            ["row", "_task_hash", "label"],
        ),
        ("label_counts", "min_examples_per_label"): lambda: (
            counts,
            (counts["examples"] < parameters["min_examples_per_label"]).fillna(False),
            ["label", "examples"],
        ),
        ("spans", "span_label_present"): lambda: (spans, spans["label"].isna(), span_columns),
        ("spans", "span_in_text"): lambda: (
            spans,
            ~spans["span_in_text"].fillna(True),
            span_columns,
        ),
        ("spans", "span_token_aligned"): lambda: (
            spans,
            ~spans["span_token_aligned"].fillna(True),
            span_columns,
        ),
        ("disputes", "no_open_disputes"): lambda: (
            disputes,
            ~disputes["resolved"],
            ["row", "input_hash", "label", "reasons"],
        ),
    }
    outcomes = {}
    for key, rule in row_rules.items():
        frame, mask, columns = rule()
        count, sample = _rows(frame, mask, columns)
        outcomes[key] = {"success": count == 0, "unexpected_count": count, "sample_rows": sample}
    answered = examples["answer"].notna()
    ignored = examples["answer"] == "ignore"
    ignore_rate = ignored.sum() / answered.sum()
    outcomes[("examples", "max_ignore_rate")] = {
        "success": bool(ignore_rate <= parameters["max_ignore_rate"]),
        "unexpected_count": int(ignored.sum()),
        "observed_value": float(ignore_rate),
        "sample_rows": examples[ignored][example_columns].head(SAMPLE).to_dict("records"),
    }
    outcomes[("examples", "not_empty")] = {"success": len(examples) >= 1, "unexpected_count": None}
    return outcomes


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def compare(gx_summary: dict[str, Any], pandas_outcomes: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Rules where the two sides disagree on success or on the number of failing rows."""
    mismatches = []
    gx_outcomes = {(e["frame"], e["rule"]): e for e in gx_summary["expectations"]}
    for key in sorted(gx_outcomes.keys() | pandas_outcomes.keys()):
        gx_outcome, pandas_outcome = gx_outcomes.get(key), pandas_outcomes.get(key)
        if gx_outcome is None or pandas_outcome is None:
            mismatches.append(f"{'.'.join(key)}: only on the {'pandas' if gx_outcome is None else 'GX'} side")
            continue
        for field in ("success", "unexpected_count"):
            if gx_outcome[field] != pandas_outcome[field]:
                mismatches.append(
                    f"{'.'.join(key)}: {field} GX {gx_outcome[field]} pandas {pandas_outcome[field]}"
                )
    return mismatches


def measure(frames, suites, rules, rounds: int) -> tuple[float, float, dict[str, Any], dict]:
    """Median seconds of each side over ``rounds`` alternating runs, and each side's last outcome."""
    from prodigy_opentext.operators.annotation_validation import run_annotation_suites

    gx_times, pandas_times = [], []
    for _ in range(rounds):
        seconds, gx_summary = _timed(lambda: run_annotation_suites(frames, suites, rules))
        gx_times.append(seconds)
        seconds, pandas_outcomes = _timed(lambda: pandas_rules(frames, rules.parameters()))
        pandas_times.append(seconds)
    return statistics.median(gx_times), statistics.median(pandas_times), gx_summary, pandas_outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="annotation rows (examples)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side (median)")
    parser.add_argument("--quick", action="store_true", help="50,000 rows, one round")
    args = parser.parse_args(argv)
    rows, rounds = (50_000, 1) if args.quick else (args.rows, args.rounds)

    import great_expectations  # noqa: F401  (imported before timing, like pandas)
    import pandas  # noqa: F401

    from prodigy_opentext.core.validation import AnnotationRules, flatten_records, load_suites

    rules = AnnotationRules(LABELS, min_examples_per_label=100, max_ignore_rate=0.05)
    suites = load_suites()
    flatten_seconds, frames = _timed(
        lambda: flatten_records(synthetic_batch(rows), rules, synthetic_disputes()).frames()
    )
    sizes = ", ".join(f"{name} {len(frame):,}" for name, frame in frames.items())
    print(f"validation: {rows:,} examples flattened in {flatten_seconds:.2f} s ({sizes})")
    gx_seconds, pandas_seconds, gx_summary, pandas_outcomes = measure(frames, suites, rules, rounds)
    mismatches = compare(gx_summary, pandas_outcomes)
    for mismatch in mismatches:
        print(f"validation: MISMATCH {mismatch}")
    failed = [f"{e['frame']}.{e['rule']}" for e in gx_summary["expectations"] if not e["success"]]
    evaluated = gx_summary["statistics"]["evaluated"]
    print(f"validation: {evaluated} rules evaluated by both sides; failing as planted: {', '.join(failed)}")
    small = flatten_records(synthetic_batch(SMALL_ROWS), rules, synthetic_disputes()).frames()
    small_gx, small_pandas, _, _ = measure(small, suites, rules, rounds)
    print(
        f"validation: same rules on {SMALL_ROWS:,} examples: GX {small_gx:.3f} s, "
        f"pandas {small_pandas:.3f} s (the part of each side's time that does not grow with rows)"
    )
    ratio = gx_seconds / pandas_seconds
    verdict = "FAIL: the two sides disagree" if mismatches else "same verdicts"
    print(
        f"validation: GX suites {gx_seconds:.3f} s, pandas {pandas_seconds:.3f} s (median of {rounds}); "
        f"ratio {ratio:.2f}x (information); {verdict}"
    )
    step_gx, step_pandas = flatten_seconds + gx_seconds, flatten_seconds + pandas_seconds
    print(
        f"validation: for scale, the whole step from records (flattening {flatten_seconds:.2f} s, the same "
        f"for both, then the rules): GX {step_gx:.2f} s, pandas {step_pandas:.2f} s, "
        f"{step_gx / step_pandas:.2f}x (not judged)"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
