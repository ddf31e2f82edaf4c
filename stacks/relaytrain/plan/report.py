"""Plans as text tables, JSON and a comparison chart."""

from __future__ import annotations

import pathlib

from relaytrain.plan import Line, Plan


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


def format_plan(p: Plan) -> str:
    out = [
        f"plan: {p.name} ({p.topology} on {p.cloud} {p.region})",
        f"  model      {p.preset}, {p.params / 1e6:,.1f}M parameters",
        f"  job        {p.tokens:,} tokens, {p.flops:.3g} training FLOPs",
        f"  workers    {p.workers}",
        f"  throughput {p.worker_flops / 1e12:.3g} TFLOP/s sustained ({p.devices})",
        f"  compute    {duration(p.train_s)}",
        f"  wall time  {duration(p.wall_s)}" + (f" in {p.legs:,} legs, {p.executions} execution(s)" if p.legs else "")
        + (f" in {p.rounds:,} rounds" if p.rounds else ""),
    ]
    out += [f"  note       {n}" for n in p.notes]
    out.append(f"  cost (prices as of {p.prices_as_of}):")
    out.append(format_lines(p.lines, p.total_usd))
    for label, amount in p.alternative.items():
        out.append(f"    (the same hours with {label}: {usd(amount)})")
    if p.budget_usd is not None:
        verdict = "fits" if p.fits_budget else "DOES NOT FIT"
        out.append(f"  budget     {usd(p.budget_usd)}: {verdict} "
                   "(the deployed run stops when the accrued cost reaches it)")
    return "\n".join(out)


def format_lines(lines: list[Line], total: float) -> str:
    w = max(len(line.item) for line in lines)
    out = [f"    {line.item:<{w}}  {line.quantity:>14,.1f} {line.unit:<16} x {line.unit_usd:<12.8g} "
           f"= {usd(line.usd):>10}   {line.source}" for line in lines]
    out.append(f"    {'total':<{w}}  {'':>14} {'':<16}   {'':<12} = {usd(total):>10}")
    return "\n".join(out)


def format_compare(plans: list[Plan | str], names: list[str], job: str) -> str:
    out = [f"compare: {job}",
           f"  {'blueprint':<30} {'topology':<16} {'workers':<58} {'wall time':>10} {'cost':>12}"]
    for name, p in zip(names, plans, strict=True):
        if isinstance(p, str):
            out.append(f"  {name:<30} {'':<16} {'does not fit: ' + p}")
            continue
        out.append(f"  {name:<30} {p.topology:<16} {p.workers[:58]:<58} {duration(p.wall_s):>10} "
                   f"{usd(p.total_usd):>12}")
    return "\n".join(out)


def write_chart(plans: list[Plan], path: pathlib.Path) -> pathlib.Path:
    """Two bar charts side by side: wall time (hours) and cost (USD) per blueprint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.name for p in plans]
    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(11, 0.6 * len(plans) + 2), sharey=True)
    ax_t.barh(names, [p.wall_s / 3600 for p in plans], color="#4C72B0")
    ax_t.set_xlabel("wall time (hours)")
    ax_c.barh(names, [p.total_usd for p in plans], color="#DD8452")
    ax_c.set_xlabel("cost (USD)")
    for ax in (ax_t, ax_c):
        ax.grid(axis="x", alpha=0.3)
    ax_t.invert_yaxis()
    fig.suptitle(f"same job on {len(plans)} topologies: {plans[0].preset}, {plans[0].tokens:,} tokens")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
