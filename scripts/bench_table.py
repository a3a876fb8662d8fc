#!/usr/bin/env python3
"""Prints the README's benchmark table (Markdown) from rivellum-bench's JSON results.

Usage: python3 scripts/bench_table.py docs/bench/results.json
"""
import json
import sys


def number(value):
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def main(path):
    with open(path) as handle:
        results = json.load(handle)
    machine = results["machine"]
    print(f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
          f"{machine.get('mhz_current', machine.get('mhz', '?'))} MHz at the start, {machine.get('memory_gib', '?')} GiB, "
          f"load average {machine.get('load_average_before', '?')} before the run. "
          f"Measured {machine.get('date', '?')} on commit {machine.get('commit', '?')}.\n")
    print("| measurement | parameters | rivellum | baseline (same run) | ratio | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for figure in results["figures"]:
        if figure["benchmark"].endswith(" writers") and figure["benchmark"].startswith("wal "):
            continue  # plotted, not tabled
        parameters = " ".join(f"{key}={value}" for key, value in sorted(figure["parameters"].items()))
        baseline = ""
        if figure.get("baseline"):
            baseline = f"{figure['baseline']}: {number(figure.get('baselineValue'))} {figure.get('baselineUnit') or figure['unit']}"
        ratio = number(figure["ratio"]) if figure.get("ratio") is not None else ""
        print(f"| {figure['benchmark']} | {parameters} | {number(figure['value'])} {figure['unit']} | "
              f"{baseline} | {ratio} | {figure.get('goal') or ''} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/bench/results.json")
