"""What a Redis token store holds, by kind of key: every key is listed
(SCAN) and grouped by its name with the hash tag blanked
(`tessera:fam:{*}:tok`), whatever the layout of the build; a sample of
each group is measured with MEMORY USAGE (SAMPLES 0: every element),
OBJECT ENCODING, TYPE and its number of elements.

usage: redis-keys.py PORT FAMILIES [SAMPLE]   (prints one JSON object)
Only needs python3 and redis-cli.
"""
import json
import random
import re
import subprocess
import sys

port, families = sys.argv[1], int(sys.argv[2])
sample_size = int(sys.argv[3]) if len(sys.argv) > 3 else 200
cli = ["redis-cli", "-p", port]


def batch(commands):
    """Runs commands (one per line) through one redis-cli; one reply each."""
    if not commands:
        return []
    text = "\n".join(commands) + "\n"
    out = subprocess.run(cli, input=text, capture_output=True, text=True, check=True).stdout
    replies = out.split("\n")
    return replies[: len(commands)]


keys = subprocess.run(cli + ["--scan"], capture_output=True, text=True,
                      check=True).stdout.split()
groups = {}
for key in keys:
    groups.setdefault(re.sub(r"\{[^}]*\}", "{*}", key), []).append(key)

random.seed(1)
report = {"keys": len(keys), "families": families, "groups": {}}
for name, members in sorted(groups.items(), key=lambda g: -len(g[1])):
    sample = members if len(members) <= sample_size else random.sample(members, sample_size)
    types = batch([f"TYPE {k}" for k in sample])
    usage = [int(x) for x in batch([f"MEMORY USAGE {k} SAMPLES 0" for k in sample])]
    encodings = batch([f"OBJECT ENCODING {k}" for k in sample])
    length_of = {"hash": "HLEN", "set": "SCARD", "zset": "ZCARD", "list": "LLEN",
                 "string": "STRLEN"}
    lengths = [int(x) for x in batch([f"{length_of.get(t, 'STRLEN')} {k}"
                                      for t, k in zip(types, sample)])]
    mean = sum(usage) / len(usage)
    report["groups"][name] = {
        "count": len(members),
        "per_family": len(members) / families if families else None,
        "sampled": len(sample),
        "type": sorted(set(types)),
        "encoding": {e: encodings.count(e) for e in sorted(set(encodings))},
        "memory_usage_mean": round(mean, 1),
        "memory_usage_max": max(usage),
        "elements_mean": round(sum(lengths) / len(lengths), 2),
        "elements_max": max(lengths),
        # The group's estimated share of each family's bytes.
        "bytes_per_family": round(mean * len(members) / families, 1) if families else None,
    }
print(json.dumps(report))
