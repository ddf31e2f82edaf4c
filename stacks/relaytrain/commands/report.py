"""`relaytrain report --store URL [--out DIR] [--tensorboard DIR] [--json]`: a run's report from its store.

`--out DIR`: loss and validation-loss, throughput and cost plots (PNG) and a summary table;
`--tensorboard DIR`: the metrics stream as TensorBoard event files (`tensorboard --logdir DIR`);
`--mlflow URI`: the stream into an MLflow tracking server or store (needs mlflow-skinny).
Either way the summary table is printed (`--json`: the summary as one JSON object). Any store
the runtime opens works: file://, s3://, gs://.
"""

from __future__ import annotations

import json
import sys

from relaytrain_runtime import RelayError


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run (file://, s3://, gs://)")
    parser.add_argument("--out", help="write loss.png, throughput.png, cost.png, summary.md and summary.json here")
    parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files here")
    parser.add_argument("--mlflow", metavar="URI", help="log the stream to this MLflow tracking URI "
                                                         "(again later: only the new steps)")
    parser.add_argument("--experiment", default="relaytrain", help="--mlflow: experiment name (%(default)s)")
    parser.add_argument("--budget", type=float, help="budget in USD for the cost plot and projection")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args) -> int:
    from relaytrain_runtime.report.plots import format_table, summary, write_report
    from relaytrain_runtime.report.status import run_status
    from relaytrain_runtime.report.view import load_run

    if args.budget is not None and not args.budget > 0:
        raise RelayError(f"--budget must be > 0 (USD), got {args.budget:g}")
    view = load_run(args.store)
    status = run_status(view, args.budget)
    written = []
    if args.out:
        written += write_report(view, status, args.out)
    if args.tensorboard:
        from relaytrain_runtime.report.tensorboard import write_events

        written.append(write_events(view, args.tensorboard))
    numbers = summary(view, status)
    if args.mlflow:
        from relaytrain_runtime.report.tracking import log_to_mlflow

        numbers["mlflow"] = log_to_mlflow(view, args.mlflow, args.experiment)
    if args.json:
        print(json.dumps({**numbers, "written": [str(p) for p in written]}, sort_keys=True))
    else:
        print(format_table(numbers))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if args.mlflow:
        logged = numbers["mlflow"]
        print(f"mlflow run {logged['run_id']}: {logged['logged']} new point(s), up to step {logged['last_step']}",
              file=sys.stderr)
    return 0
