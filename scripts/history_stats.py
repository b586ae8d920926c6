#!/usr/bin/env python3
"""Counts the events of captured workflow histories (WorkflowHistory::to_json
format) and prints history events per accrual signal.

Usage: scripts/history_stats.py tests/histories/*.json
"""

import collections
import json
import sys

for path in sys.argv[1:]:
    with open(path) as f:
        events = json.load(f)["events"]
    kinds = collections.Counter(next(iter(e.get("attributes") or {"?": 0})) for e in events)
    signals = sum(n for kind, n in kinds.items() if "Signaled" in kind)
    per_signal = f"{len(events) / signals:.2f}" if signals else "n/a"
    print(f"{path}: {len(events)} events, {signals} signals, {per_signal} events per signal")
    for kind, n in kinds.most_common():
        print(f"  {n:6} {kind.removesuffix('EventAttributes')}")
