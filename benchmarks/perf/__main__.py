"""Measure training step time and IW-NLL evaluation throughput and peak memory, in fresh processes.

Each measurement runs in its own child process so that its peak resident memory (``ru_maxrss``) is its own.
Usage: ``python -m benchmarks.perf [--json-only] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MEASURE = r"""
import json, resource, sys, time
import torch
from vaezoo.config import merge_raw, resolve
from vaezoo.metrics import importance_weighted_log_likelihood
from vaezoo.model import build_model
from vaezoo.plugins import load_plugins
from vaezoo.interfaces import DataSpec

task = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(task.get("threads", 2))
registry = load_plugins().registry
config = resolve(merge_raw({"regularizer": {"name": task["regularizer"]}, "model": {"latent_dim": 32},
                            "data": {"name": "synthetic", "dim": 784}}), registry)
spec = DataSpec((784,), "real")
model = build_model(config, registry, spec)
x = torch.randn(task["batch"], 784)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if task["what"] == "step":
    optimizer = torch.optim.Adam(model.main_parameters())
    def once():
        loss, _ = model.loss(model.forward_step(x, 0))
        optimizer.zero_grad(); loss.backward(); optimizer.step()
else:
    prior = model.prior()
    def once():
        with torch.no_grad():
            importance_weighted_log_likelihood(model.decoder, model.encoder(x), prior, x, task["k"], task["chunk"])
once()
start = time.perf_counter()
for _ in range(task["repeats"]):
    once()
seconds = (time.perf_counter() - start) / task["repeats"]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024, "extra_rss_mb": (peak - baseline) / 1024}))
"""


def measure(task: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(task)], capture_output=True, text=True, check=True)
    return {**task, **json.loads(out.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    rows = [measure({"what": "step", "regularizer": "betavae", "batch": 64, "repeats": args.repeats})]
    for chunk in (10, 100, 500):
        rows.append(
            measure({"what": "iw_nll", "regularizer": "betavae", "batch": 100, "k": 500, "chunk": chunk, "repeats": 2})
        )
    for row in rows:
        if row["what"] == "iw_nll":
            row["examples_per_s"] = row["batch"] / row["seconds"]
    print(json.dumps(rows, indent=2))
    if not args.json_only:
        print("\n| measurement | batch | k | chunk | seconds | examples/s | extra RSS (MB) |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            rate = f"{row['examples_per_s']:.0f}" if "examples_per_s" in row else ""
            print(
                f"| {row['what']} ({row['regularizer']}, MLP 784-d) | {row['batch']} | {row.get('k', '')} | "
                f"{row.get('chunk', '')} | {row['seconds']:.4f} | {rate} | {row['extra_rss_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
