"""Watching a run from its store: status, TensorBoard event files, plots, structured log lines.

Torch-free (the kit's `relaytrain status` and `relaytrain report` import it): everything is read
as JSON through the run contract (`relaytrain_runtime.contract`), for any store (file://, s3://, gs://).

    view.load_run(store)           the run's spec, retained commits, lineage, metrics stream, legs, evals
    status.run_status(run, ...)    step, epoch, tokens, loss, val loss, tokens/s, ETA, cost, projected cost
    tensorboard.write_events(...)  the stream as TensorBoard scalars (tensorboard's own numpy-only writer)
    plots.write_report(...)        loss, throughput and cost PNGs and a summary table
    logline.commit_log_line(...)   one structured JSON log line per commit (GCP log-based metrics)
    live.LiveLog(store, ...)       a node's commits as they land: TensorBoard event files, MLflow
"""
