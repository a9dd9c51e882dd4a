#!/usr/bin/env python3
"""record.py RESULTS KEY VALUE: merge one figure into the flat results JSON (numbers
stay numbers). For scripts; Rust code uses homelab_test_support::bench::record."""
import json
import os
import sys

path, key, raw = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    value = float(raw)
    value = int(value) if value.is_integer() and "." not in raw else round(value, 3)
except ValueError:
    value = raw
results = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        results = json.load(f)
results[key] = value
os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
with open(path, "w") as f:
    json.dump(results, f, indent=2, sort_keys=True)
    f.write("\n")
print(f"bench: {key} = {value}", file=sys.stderr)
