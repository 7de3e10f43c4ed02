"""The theory lab's outputs: one record per setting, rendered as markdown, CSV, JSON and a plot.

Every format is built from :func:`records`, so they cannot disagree. Numbers are nats; a parameter a
regulariser does not use is None in JSON, empty in CSV and "-" in markdown.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import markdown_table as markdown_lines
from vaezoo_plugins.theory.defaults import FILES
from vaezoo_plugins.theory.lab import COLLAPSE_NATS, LabResult, Row


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _column(key: str, spec: str) -> Callable[[dict[str, Any]], str]:
    return lambda rec: _number(rec[key], spec)


def _tied_range(rec: dict[str, Any]) -> str:
    return f"{rec['tied_restarts']}: {rec['tied_mi_min']:.4f} to {rec['tied_mi_max']:.4f}"


def _fixed_point_mi(rec: dict[str, Any]) -> str:
    text = _number(rec["fixed_point_mi"], ".6f")
    return text if rec["fixed_point_converged"] in (None, True) else f"{text} (not converged)"


# markdown header -> cell of a record
MARKDOWN_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("regularizer", lambda rec: rec["regularizer"]),
    ("β", _column("beta", "g")),
    ("δ", _column("delta", "g")),
    ("α", _column("alpha", "g")),
    ("λ", _column("lambda", "g")),
    ("loss", _column("objective", ".6f")),
    ("I(X;Z)", _column("mi", ".6f")),
    ("collapsed", lambda rec: "yes" if rec["collapsed"] else "no"),
    ("tied restarts: I range", _tied_range),
    ("I fixed point", _fixed_point_mi),
    ("max abs q diff", _column("fixed_point_max_abs_diff", ".1e")),
)
CSV_COLUMNS = (
    "regularizer", "sweep", "beta", "delta", "alpha", "lambda", "objective", "mi", "collapsed", "tied_restarts",
    "tied_mi_min", "tied_mi_max", "fixed_point_mi", "fixed_point_objective", "fixed_point_max_abs_diff",
    "fixed_point_iterations", "fixed_point_converged",
)  # fmt: skip


def record(row: Row) -> dict[str, Any]:
    """One row as plain data (the keys of :data:`CSV_COLUMNS`, None where not applicable) and the optimal
    encoder q(z|x) as a list of rows (x) of probabilities (z)."""
    optimum, setting, comparison = row.optimum, row.optimum.setting, row.comparison
    return {
        "regularizer": setting.regularizer,
        "sweep": setting.sweep,
        "beta": setting.beta,
        "delta": setting.delta,
        "alpha": setting.alpha,
        "lambda": setting.lambda_,
        "objective": optimum.objective,
        "mi": optimum.mutual_information,
        "collapsed": row.collapsed,
        "tied_restarts": row.tied_restarts,
        "tied_mi_min": row.tied_mi[0],
        "tied_mi_max": row.tied_mi[1],
        "fixed_point_mi": comparison and comparison.mutual_information,
        "fixed_point_max_abs_diff": comparison and comparison.max_abs_diff,
        "fixed_point_objective": comparison and comparison.objective,
        "fixed_point_iterations": comparison and comparison.fixed_point.iterations,
        "fixed_point_converged": comparison and comparison.fixed_point.converged,
        "encoder": optimum.encoder.tolist(),
    }


def records(result: LabResult) -> list[dict[str, Any]]:
    """Every row of ``result`` as a :func:`record`."""
    return [record(row) for row in result.rows]


def to_json(result: LabResult) -> dict[str, Any]:
    """The whole result as JSON-ready data: problem, configuration, H(X), log Z, wall time and the rows."""
    config = attrs.asdict(result.config)
    problem = config.pop("problem")
    return {
        "problem": problem,
        "config": config,
        "data_entropy": result.data_entropy,
        "log_z": math.log(result.config.problem.z_size),
        "collapse_threshold": COLLAPSE_NATS,
        "seconds": result.seconds,
        "rows": records(result),
    }


def to_csv(result: LabResult) -> str:
    """The table as CSV with the columns :data:`CSV_COLUMNS` (the encoder is left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records(result):
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buffer.getvalue()


def markdown_table(result: LabResult) -> str:
    """The rows as a markdown table with the columns :data:`MARKDOWN_COLUMNS`."""
    titles = [title for title, _ in MARKDOWN_COLUMNS]
    rows = [[cell(rec) for _, cell in MARKDOWN_COLUMNS] for rec in records(result)]
    return "\n".join(markdown_lines(titles, rows))


def _vector(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def to_markdown(result: LabResult) -> str:
    """A self-describing report: the problem, what each column means, and the table."""
    config, problem = result.config, result.config.problem
    vectors = ", ".join(
        f"{name} = {_vector(values)}"
        for name, values in (
            ("p_d", problem.p_data),
            ("p_n", problem.p_noise),
            ("p", problem.prior),
            ("n", problem.contrastive_prior),
        )
    )
    return "\n".join(
        [
            "# Theory lab: exact optima on finite spaces",
            "",
            f"X = {problem.x_size}, Z = {problem.z_size}; {vectors}.",
            f"H(X) = {result.data_entropy:.6f} nats (the largest I(X;Z) can be); "
            f"log Z = {math.log(problem.z_size):.6f}.",
            f"{config.restarts} random restarts x {config.steps} Adam steps (lr {config.lr:g}, cosine decay), "
            f"seed {config.seed}; {result.seconds:.1f} s.",
            "",
            "Grid: β of betavae and ncvae = s for each swept s (ncvae once per δ); infovae α = 1 - s, so that its "
            f"weight of E KL(q(z|x)||p) is s, with λ = {config.infovae_lambda:g}; aae λ = s. "
            f"Collapsed: I(X;Z) < {COLLAPSE_NATS:g} nats at the best restart. Tied restarts: how many restarts "
            "ended within 1e-6 nats of the best loss, and the range of I(X;Z) among them (a wide range means the "
            "objective does not determine I). I fixed point, max abs q diff: Theorem 5's fixed point and "
            "max |q_opt(z|x) - q_fp(z|x)| (ncvae with β > 1 and δ > 0 only).",
            "",
            markdown_table(result),
            "",
        ]
    )


STYLES = {  # distinct markers and line styles, so that coinciding lines stay visible
    "betavae": {"marker": "o", "linestyle": "-", "markersize": 8},
    "infovae": {"marker": "s", "linestyle": "--", "markersize": 4},
    "aae": {"marker": "^", "linestyle": "-"},
    "ncvae": {"marker": "D", "linestyle": "-", "markersize": 4},
}


def _lines(result: LabResult) -> dict[str, list[Row]]:
    """The rows grouped into plot lines: one per regulariser, one per δ for ncvae."""
    lines: dict[str, list[Row]] = {}
    for row in result.rows:
        setting = row.optimum.setting
        label = setting.regularizer if setting.delta is None else f"{setting.regularizer} δ={setting.delta:g}"
        lines.setdefault(label, []).append(row)
    return lines


def plot(result: LabResult, path: Path) -> None:
    """I(X;Z) at the optimum against the swept value, one line per regulariser (ncvae: per δ), with H(X) and the
    collapse threshold as horizontal lines and Theorem 5's fixed points as crosses. Both axes are symlog, so
    that exact zeros (collapse) and small positive values stay apart."""
    import matplotlib  # here, so that importing the CLI does not load matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, rows in _lines(result).items():
        style = STYLES[rows[0].optimum.setting.regularizer]
        xs = [r.optimum.setting.sweep for r in rows]
        (line,) = ax.plot(xs, [r.optimum.mutual_information for r in rows], label=label, **style)
        fixed = [r for r in rows if r.comparison is not None]
        ax.plot(
            [r.optimum.setting.sweep for r in fixed],
            [r.comparison.mutual_information for r in fixed],
            "x",
            color=line.get_color(),
            markersize=11,
        )
    ax.axhline(result.data_entropy, color="grey", linestyle="--", linewidth=1, label="H(X)")
    ax.axhline(COLLAPSE_NATS, color="grey", linestyle=":", linewidth=1, label="collapse threshold")
    ax.plot([], [], "x", color="black", label="Theorem 5 fixed point")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(result.config.betas, [f"{s:g}" for s in result.config.betas])
    ax.minorticks_off()
    ax.set_yscale("symlog", linthresh=COLLAPSE_NATS)
    ax.set_ylim(bottom=0, top=1.5 * result.data_entropy)
    ax.set_xlabel("swept value s: β (betavae, ncvae), 1 − α (infovae), λ (aae)")
    ax.set_ylabel("I(X;Z) at the optimum (nats)")
    ax.set_title("Non-parametric optima on finite spaces")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: LabResult, out_dir: Path) -> list[Path]:
    """Write theory.md, theory.csv, theory.png and theory.json into ``out_dir`` (created); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path, png, json_path = (out_dir / name for name in FILES)
    md.write_text(to_markdown(result))
    csv_path.write_text(to_csv(result))
    plot(result, png)
    json_path.write_text(json.dumps(to_json(result), indent=2) + "\n")
    return [md, csv_path, png, json_path]
