"""`relaytrain report [FILE] [--store URL] [--out DIR] [--tensorboard DIR] [--json]`: a run's report from its store.

The store: `--store URL`, else the deployed AWS stack of blueprint FILE (as `relaytrain status FILE`).

`--out DIR`: loss and validation-loss, throughput and cost plots (PNG) and a summary table;
`--tensorboard DIR`: the metrics stream as TensorBoard event files (`tensorboard --logdir DIR`);
`--mlflow URI`: the stream into an MLflow tracking server or store (needs mlflow-skinny); default: the
blueprint's `tracking: {mlflow: URI}` when FILE is given.
Either way the summary table is printed (`--json`: the summary as one JSON object). Any store
the runtime opens works: file://, s3://, gs://.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    from relaytrain.commands.status import add_target_arguments

    add_target_arguments(parser, "the blueprint file of the run (its tracking and budget; without --store: the "
                                 "deployed AWS stack's run)", "budget in USD for the cost plot and projection "
                                 "(default: the blueprint's)")
    parser.add_argument("--out", help="write loss.png, throughput.png, cost.png, summary.md and summary.json here")
    parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files here")
    parser.add_argument("--mlflow", metavar="URI", help="log the stream to this MLflow tracking URI "
                                                         "(again later: only the new steps; default: the "
                                                         "blueprint's tracking.mlflow)")
    parser.add_argument("--experiment", default="relaytrain", help="--mlflow: experiment name (%(default)s)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args) -> int:
    from relaytrain.commands.status import target
    from relaytrain_runtime.report.plots import format_table, summary, write_report
    from relaytrain_runtime.report.status import run_status
    from relaytrain_runtime.report.view import load_run

    store_url, blueprint, _executions, budget = target(args, "report")
    mlflow_uri = args.mlflow or (blueprint.tracking.mlflow if blueprint else "") or None
    view = load_run(store_url)
    status = run_status(view, budget)
    written = []
    if args.out:
        written += write_report(view, status, args.out)
    if args.tensorboard:
        from relaytrain_runtime.report.tensorboard import write_events

        written.append(write_events(view, args.tensorboard))
    numbers = summary(view, status)
    if mlflow_uri:
        from relaytrain_runtime.report.tracking import log_to_mlflow

        numbers["mlflow"] = log_to_mlflow(view, mlflow_uri, args.experiment)
    if args.json:
        print(json.dumps({**numbers, "written": [str(p) for p in written]}, sort_keys=True))
    else:
        print(format_table(numbers))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if mlflow_uri:
        logged = numbers["mlflow"]
        print(f"mlflow run {logged['run_id']}: {logged['logged']} new point(s), up to step {logged['last_step']}",
              file=sys.stderr)
    return 0
