#!/usr/bin/env python3
"""Group flat `perf` profiles of the server by where the time goes.

    python3 benches/profile-summary.py DIR/rs256-refresh-chain.data [...]

Prints a Markdown table: one column per profile, one row per group (the
share of the profile's samples whose own frame is in that group), then the
heaviest symbols of each profile. The groups are read off symbol names (the
crypto library is linked into the binary, so the shared object does not
tell it apart); the kernel's samples are those perf marks [k].
"""
import collections
import re
import subprocess
import sys

# First match wins; the order puts the specific names before the broad ones.
GROUPS = [
    ("signing and other crypto (aws-lc; SHA-256, HMAC)",
     r"aws_lc|sha2::|hmac::|digest::|p256::|ed25519|ring::|ecp_nistz256|bignum|rsaz|"
     r"^_?(bn|sha256|x25519|rand_bytes)_"),
    ("allocator (mimalloc), memcpy", r"^_?mi_|mimalloc|memcpy|memmove|memset|__memcmp|malloc|free$|realloc|__rust_(de|re)?alloc|"
     r"__rust_no_alloc"),
    ("hyper", r"hyper::|hyper_util::|httparse"),
    ("tokio", r"tokio::|mio::"),
    ("redis client", r"redis::|combine::"),
    ("SQLite", r"sqlite3|rusqlite|^(wal|pcache|btree|vdbe|pager)[A-Z]"),
    ("JSON", r"serde_json|serde::"),
    ("axum, tower layers, http types", r"axum|tower|<http::|^http::|bytes::"),
]
KERNEL = "kernel (TCP on loopback, wake-ups)"
OTHER = "other user space (our code, futures, libc, clock)"
ORDER = [g for g, _ in GROUPS[:1]] + [KERNEL] + [g for g, _ in GROUPS[1:]] + [OTHER]
LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$")


def samples(path):
    """(dso, symbol, percent, in_kernel) of each symbol's own samples."""
    report = subprocess.run(
        ["perf", "report", "-i", path, "--stdio", "--no-children", "-q",
         "--sort", "dso,sym", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    for line in report.splitlines():
        m = LINE.match(line)
        if m:
            # perf marks a kernel symbol [k], a user-space one [.]
            yield m.group(2), m.group(4).strip(), float(m.group(1)), m.group(3) == "k"


def group_of(symbol, in_kernel):
    if in_kernel:
        return KERNEL
    for name, pattern in GROUPS:
        if re.search(pattern, symbol):
            return name
    return OTHER


def summarize(path):
    """The share of each group, and the heaviest symbols."""
    groups = collections.Counter()
    top = []
    for _dso, symbol, percent, in_kernel in samples(path):
        groups[group_of(symbol, in_kernel)] += percent
        top.append((percent, symbol[:90]))
    top.sort(reverse=True)
    return groups, top[:12]


def main(paths):
    results = [summarize(p) for p in paths]
    # "profile/rs256-refresh-chain.data" → "profile/rs256-refresh-chain"
    names = ["/".join(p.split("/")[-2:]).removesuffix(".data") for p in paths]
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for group in ORDER:
        print(f"| {group} | " + " | ".join(f"{groups[group]:.1f} %" for groups, _ in results) + " |")
    for name, (_, top) in zip(names, results):
        print(f"\nHeaviest symbols, {name}:\n")
        for percent, symbol in top:
            print(f"- {percent:.1f} % `{symbol}`")


if __name__ == "__main__":
    main(sys.argv[1:])
