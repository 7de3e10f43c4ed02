"""He et al.'s MI (``mi_he``) of trained runs on their test split, with the images grouped in consecutive runs of 50
and at random, the same model and posteriors either way: what the grouping alone moves. The estimate samples z_i ~
q(z|x_i), so each figure is the mean of ``DRAWS`` seeded evaluations (new samples, and new groups for the random
grouping), with its standard error.

    VAEZOO_DATA=../shared/data python benchmarks/measured/table1-cpu-random-groups/grouping.py RUN_DIR [RUN_DIR ...]

prints one JSON line per run directory (a suite's ``CELL/run``).
"""

import json
import statistics
import sys
from pathlib import Path

import torch

from vaezoo.api import default_plugins, load_trained, resolve_data_dir
from vaezoo_plugins.metrics.information import mutual_information_he

GROUP = 50
DRAWS = 20


def groupings(run_dir: Path) -> dict[str, float | str]:
    session = load_trained(run_dir, default_plugins().registry, resolve_data_dir(None))
    session.model.eval()
    with torch.no_grad():
        posteriors = [session.model.encoder(x) for x in session.batches("test")]
    loc = torch.cat([q.mean for q in posteriors])
    scale = torch.cat([q.stddev for q in posteriors])
    count = len(loc)
    torch.manual_seed(0)
    consecutive = [mutual_information_he(loc, scale, list(torch.arange(count).split(GROUP))) for _ in range(DRAWS)]
    random = [mutual_information_he(loc, scale, list(torch.randperm(count).split(GROUP))) for _ in range(DRAWS)]
    return {"run": str(run_dir), **summary("consecutive", consecutive), **summary("random", random)}


def summary(name: str, draws: list[float]) -> dict[str, float]:
    return {name: statistics.mean(draws), f"{name}_se": statistics.stdev(draws) / len(draws) ** 0.5}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        print(json.dumps(groupings(Path(run))), flush=True)
