#!/usr/bin/env python3
"""Exclusive (self) instruction counts per function from callgrind dumps.

Usage: cg-self.py BASE.dump OTHER.dump N [TOP]
Prints, per request (N requests each), the self cost OTHER − BASE grouped
into coarse categories and the top functions by difference. Names are
resolved per file (callgrind compresses them as "(id) name" on first use).
"""
import collections
import re
import sys


def self_costs(path):
    names = {}
    cost = collections.Counter()
    fn = None
    skip = False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(fn|cfn|fl|fi|fe|cfl|cfi|ob|cob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, i, name = m.groups()
            if kind in ("fn", "cfn"):
                if name:
                    names[i] = name
                if kind == "fn":
                    fn = names.get(i, i)
            continue
        if line.startswith("calls="):
            skip = True  # the next cost line is the call's inclusive cost
            continue
        m = re.match(r"^[+-]?\d+ (\d+)$", line) or re.match(r"^\* (\d+)$", line)
        if m and fn is not None:
            if skip:
                skip = False
                continue
            cost[fn] += int(m.group(1))
    return cost


CATS = [
    ("sha2", "sha-256 (soft under valgrind)"), ("digest", "sha-256 (soft under valgrind)"),
    ("malloc", "malloc/free"), ("free", "malloc/free"), ("_int_", "malloc/free"),
    ("rdl_", "malloc/free"), ("__rust_", "malloc/free"), ("memcpy", "memcpy"),
    ("memmove", "memcpy"), ("memcmp", "memcmp"), ("warp::", "warp"),
    ("http::header", "http HeaderMap"), ("dashgate::policy", "policy"),
    ("dashgate::gate", "gate"), ("dashgate::metrics", "metrics"),
    ("prometheus", "metrics"), ("hashbrown", "hashing"), ("Hasher", "hashing"),
    ("tokio", "tokio"), ("hyper", "hyper"), ("serde_json", "json"),
]


def cat(k):
    for key, c in CATS:
        if key in k:
            return c
    return "other"


a, b, n = self_costs(sys.argv[1]), self_costs(sys.argv[2]), int(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
cats = collections.Counter()
for k in set(a) | set(b):
    cats[cat(k)] += b[k] - a[k]
for c, v in cats.most_common():
    print(f"{v / n:8.0f}  {c}")
print(f"{sum(cats.values()) / n:8.0f}  total per request")
print()
diff = sorted(((b[k] - a[k], k) for k in set(a) | set(b)), reverse=True)
for v, k in diff[:top]:
    print(f"{v / n:8.0f}  {k[:160]}")
