"""The planner: time and cost of a blueprint before anything is deployed.

    plan(bp, devices=None, hours=None) -> Plan

Training FLOPs come from the model and the token budget (6 x parameters per token for the
matmuls, plus 12 x layers x d_model x seq_len for attention, as in the PaLM paper's appendix B);
throughput from `relaytrain.plan.devices`; every cost line carries its unit price and source
from `relaytrain.prices`. `hours` prices a fixed duration instead (e.g. the seed paper's 96 h).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from relaytrain import prices
from relaytrain.blueprint import limits as L
from relaytrain.blueprint.memory import checkpoint_bytes
from relaytrain.blueprint.schema import Blueprint
from relaytrain.plan import devices as D
from relaytrain.plan import sfn
from relaytrain.worker import lambda_vcpu, node_hour_lines, node_hourly_usd, shards_config
from relaytrain_runtime import RelayError
from relaytrain_runtime.throughput import flops_per_token, trainable_params  # one formula for the planner and the node

MONTH_S = 730 * 3600
CHECKPOINT_OBJECTS = 5  # weights, optimizer, state, baton manifest, leg status
PART_BYTES = 16 * 2**20  # multipart part size for large objects
WORKFLOW_STEPS_PER_ROUND = 4  # besides one call per shard: assign, reduce call, done? switch, loop


@dataclass
class Line:
    item: str  # display text
    quantity: float
    unit: str
    unit_usd: float
    usd: float
    source: str
    kind: str  # the price key (relaytrain.prices), e.g. "lambda.gb_s.x86_64": what code selects lines by


@dataclass
class Plan:
    name: str
    topology: str
    cloud: str
    region: str
    preset: str
    params: int
    tokens: int
    flops: float
    workers: str
    worker_flops: float  # sustained FLOP/s of the whole topology
    train_s: float  # pure compute time
    wall_s: float
    legs: int = 0  # lambda-steps
    legs_per_execution: int = 0
    executions: int = 0
    rounds: int = 0  # function-shards
    lines: list[Line] = field(default_factory=list)
    total_usd: float = 0.0
    alternative: dict = field(default_factory=dict)  # e.g. {"on-demand": usd} for a spot plan
    budget_usd: float | None = None
    fits_budget: bool | None = None
    notes: list[str] = field(default_factory=list)
    devices: str = ""
    epochs: float | None = None  # passes over the train split the steps take; None: its token count is unknown
    epochs_basis: str = ""  # where the train split's token count came from (manifest, estimate, stated)
    prices_as_of: str = prices.AS_OF

    def to_dict(self) -> dict:
        return asdict(self)


def _train_tokens(bp: Blueprint, spec, stated: int | None) -> tuple[int | None, str]:
    """The train split's token count without building or fetching anything, and where it came from: `stated`
    (the caller's), a prepared dataset on this machine (its manifest: shard views), or for stdlib an estimate
    (its train bytes, known exactly, at the bytes per token its BPE measured). (None, why) otherwise: a
    remote dataset, or what a hybrid pipeline preprocesses from its raw prefix."""
    from relaytrain_runtime.data import DataError, read_manifest
    from relaytrain_runtime.data.build import bytes_per_token, stdlib_train_bytes, view_tokens
    from relaytrain_runtime.store import StoreError, open_store

    if stated is not None:
        return stated, f"{stated:,} train tokens as stated"
    if bp.topology == "hybrid" and not spec.dataset.startswith("file://"):
        return None, (f"the pipeline trains on what it preprocesses from dataset.raw_prefix ({bp.dataset.raw_prefix}); "
                      "state its train tokens with --train-tokens N")
    if spec.dataset == "stdlib":
        train, rate = stdlib_train_bytes(), bytes_per_token(spec.model.vocab_size)
        return round(train / rate), (f"estimated: the stdlib train split's {train:,} bytes at ~{rate:.2f} bytes per "
                                     f"token of a {spec.model.vocab_size:,}-token BPE")
    if "://" in spec.dataset and not spec.dataset.startswith("file://"):
        return None, (f"{spec.dataset} is not read by the planner; state its train tokens with --train-tokens N "
                      "(`relaytrain data inspect URL` shows them)")
    try:
        shards = read_manifest(open_store(spec.dataset))["splits"]["train"]
        return sum(map(view_tokens, shards)), f"{spec.dataset}'s manifest"
    except (DataError, StoreError, KeyError, TypeError, ValueError) as exc:
        return None, f"{spec.dataset} has no readable manifest ({str(exc)[:120]})"


def _epochs(result: Plan, bp: Blueprint, spec, stated: int | None) -> None:
    """How many epochs the run's steps cover (Plan.epochs, .epochs_basis, a note)."""
    from relaytrain_runtime.data import DataError, epochs

    tokens, basis = _train_tokens(bp, spec, stated)
    try:
        result.epochs = None if tokens is None else epochs(spec, tokens)
    except DataError as exc:
        basis = str(exc)
    result.epochs_basis = basis
    result.notes.append(f"data: the steps cover {result.epochs:.3f} epoch(s) of the train split ({basis})"
                        if result.epochs is not None else f"data: epochs unknown ({basis})")


def _line(plan: Plan, item: str, quantity: float, key: str) -> None:
    p = prices.price(key)
    plan.lines.append(Line(item, quantity, p.unit, p.usd, quantity * p.usd, p.source, key))


def plan(bp: Blueprint, devices: D.Devices | None = None, hours: float | None = None,
         train_tokens: int | None = None) -> Plan:
    devices = devices or D.Devices()
    spec = bp.training.run_spec()
    model = spec.model
    tokens = spec.steps * spec.tokens_per_step
    flops = tokens * flops_per_token(model, spec.sequence_length, spec)
    result = Plan(bp.name, bp.topology, bp.cloud, bp.region, spec.preset, model.param_count(), tokens, flops,
                  "", 0.0, 0.0, 0.0, budget_usd=bp.budget_usd, devices=devices.source)
    {"lambda-steps": _lambda_steps, "function-shards": _function_shards, "gpu-node": _gpu_node,
     "hybrid": _hybrid}[bp.topology](result, bp, spec, devices, hours)
    _epochs(result, bp, spec, train_tokens)
    result.total_usd = sum(line.usd for line in result.lines)
    if bp.budget_usd is not None:
        result.fits_budget = result.total_usd <= bp.budget_usd
    return result


def _storage(plan: Plan, bp: Blueprint, spec, wall_s: float, puts: float, gets: float, restores: float) -> None:
    """Checkpoints kept in the bucket for the run's duration (keep_last of them) and their requests."""
    stored_gb = checkpoint_bytes(spec.model, spec) * spec.keep_last / 1e9
    store = "s3" if bp.cloud == "aws" else "gcs"
    _line(plan, f"{store.upper()} storage, {spec.keep_last} checkpoints", stored_gb * wall_s / MONTH_S,
          f"{store}.gb_month")
    _line(plan, f"{store.upper()} writes", puts, "s3.put" if store == "s3" else "gcs.class_a")
    _line(plan, f"{store.upper()} reads", gets, "s3.get" if store == "s3" else "gcs.class_b")
    _line(plan, "data transfer, checkpoints (same region)", checkpoint_bytes(spec.model, spec) / 1e9 * restores,
          "transfer.in_region_gb")


def _parts(nbytes: float) -> int:
    return max(1, math.ceil(nbytes / PART_BYTES))


def _lambda_steps(plan: Plan, bp: Blueprint, spec, devices: D.Devices, hours) -> None:
    lam = bp.lambda_
    vcpu = lambda_vcpu(lam.memory_mb)
    rate = vcpu * devices.cpu_flops_per_vcpu
    ckpt = checkpoint_bytes(spec.model, spec)
    io_s = ckpt / D.STORE_BYTES_PER_S["lambda"]
    step_s = plan.flops / spec.steps / rate
    usable = lam.timeout_s - lam.leg_margin_s - D.COLD_START_S["lambda"] - io_s
    plan.workers = f"1 Lambda x {lam.memory_mb} MB ({vcpu:.2f} vCPU), {lam.timeout_s} s legs"
    plan.worker_flops = rate
    plan.train_s = plan.flops / rate
    if usable < step_s:
        raise RelayError(f"{bp.name}: one {spec.preset} step takes ~{step_s:.0f} s at {vcpu:.2f} vCPU and restoring "
                         f"a checkpoint ~{io_s:.0f} s, but a leg has {lam.timeout_s - lam.leg_margin_s} s: no leg "
                         "could ever commit (raise lambda.memory_mb, lower training.batch_size, or use gpu-node)")
    steps_per_leg = int(usable // step_s)
    plan.legs = math.ceil(spec.steps / steps_per_leg)
    leg_s = D.COLD_START_S["lambda"] + io_s + steps_per_leg * step_s + io_s  # restore, train, save
    last_leg_s = D.COLD_START_S["lambda"] + 2 * io_s + (spec.steps - steps_per_leg * (plan.legs - 1)) * step_s
    billed_s = (plan.legs - 1) * leg_s + last_leg_s
    if hours is not None:
        billed_s = hours * 3600
        plan.legs = math.ceil(billed_s / leg_s)
    plan.wall_s = billed_s
    plan.executions = sfn.executions(plan.legs, lam.retries)
    events = sfn.events_per_leg(lam.retries)
    plan.legs_per_execution = sfn.legs_per_execution(lam.retries)
    plan.notes.append(f"{steps_per_leg} steps per leg (~{step_s:.2f} s each); one Step Functions execution holds "
                      f"{plan.legs_per_execution:,} legs within its {L.SFN_HISTORY_EVENTS:,} history events "
                      f"(worst case {events} events per leg with {lam.retries} retries), then continues as new: "
                      f"{plan.executions} execution(s)")
    billed = [leg_s] * (plan.legs - 1) + [last_leg_s] if hours is None else [billed_s / plan.legs] * plan.legs
    plan.lines += lambda_legs_cost(bp, billed)
    objects = CHECKPOINT_OBJECTS + _parts(ckpt)
    _storage(plan, bp, spec, billed_s, plan.legs * objects, plan.legs * objects, plan.legs)
    if bp.cache.enabled:
        data_gb = plan.tokens * 2 / 1e9
        _line(plan, "EFS storage (dataset cache)", data_gb * billed_s / MONTH_S, "efs.gb_month")
        _line(plan, "EFS reads (dataset cache)", data_gb, "efs.read_gb")


def lambda_legs_cost(bp: Blueprint, billed_s: list[float]) -> list[Line]:
    """What legs of these billed durations cost on Lambda + Step Functions (the planner and `run --local`)."""
    lam = bp.lambda_
    scratch = Plan(bp.name, bp.topology, bp.cloud, bp.region, "", 0, 0, 0.0, "", 0.0, 0.0, 0.0)
    legs = len(billed_s)
    _line(scratch, f"Lambda compute ({lam.architecture}, {lam.memory_mb} MB)", sum(billed_s) * lam.memory_mb / 1024,
          f"lambda.gb_s.{lam.architecture}")
    _line(scratch, "Lambda requests", legs, "lambda.request")
    _line(scratch, "Step Functions transitions",  # legs that succeed first time; a retry adds one each
          legs * sfn.transitions_per_leg(0) + 2 * sfn.executions(legs, lam.retries), "sfn.transition")
    return scratch.lines


def _function_shards(plan: Plan, bp: Blueprint, spec, devices: D.Devices, hours) -> None:
    fn = bp.functions
    rate = fn.vcpu * devices.cpu_flops_per_vcpu
    config = shards_config(bp)
    steps_per_round = config.steps_per_round
    plan.rounds = config.rounds(spec.steps)
    compute_s = plan.flops / plan.rounds / fn.shards / rate  # per shard per round
    p = spec.model.param_count()
    trained = trainable_params(spec.model, spec)  # LoRA: the adapters are all that is exchanged and optimized
    exchange = trained * config.exchange_bytes
    bw = D.STORE_BYTES_PER_S["functions"]
    shard_s = (4 * p + exchange) / bw + compute_s  # read weights (a LoRA base too), compute, write update
    # read updates + optimizer, commit
    reduce_s = (fn.shards * exchange + 8 * trained + checkpoint_bytes(spec.model, spec)) / bw
    round_s = D.ROUND_OVERHEAD_S + shard_s + reduce_s
    if shard_s > fn.timeout_s:
        raise RelayError(f"{bp.name}: one round takes a shard ~{shard_s:.0f} s, over functions.timeout_s "
                         f"{fn.timeout_s} (add shards or lower training.batch_size)")
    plan.workers = f"{fn.shards} Cloud Functions x {fn.vcpu} vCPU / {fn.memory_gib:g} GiB, sync {fn.sync}"
    plan.worker_flops = rate * fn.shards
    plan.train_s = plan.flops / plan.worker_flops
    plan.wall_s = hours * 3600 if hours is not None else plan.rounds * round_s + D.COLD_START_S["functions"]
    rounds = plan.wall_s / round_s
    plan.notes.append(f"{plan.rounds:,} rounds of {steps_per_round} step(s): shard ~{shard_s:.1f} s "
                      f"(compute {compute_s:.1f} s), reduce ~{reduce_s:.1f} s; exchange {exchange / 1e6:.0f} MB per "
                      f"shard per round ({fn.exchange_dtype})")
    plan.lines += functions_cost(bp, rounds * (fn.shards * shard_s + reduce_s), rounds)
    ckpt_objects = CHECKPOINT_OBJECTS + _parts(checkpoint_bytes(spec.model, spec))
    puts = rounds * (fn.shards * _parts(exchange) + ckpt_objects)
    gets = rounds * (fn.shards * (_parts(4 * p) + _parts(exchange)) + ckpt_objects)
    _storage(plan, bp, spec, plan.wall_s, puts, gets, rounds * (fn.shards + 1))


def functions_cost(bp: Blueprint, busy_s: float, rounds: float) -> list[Line]:
    """What `rounds` rounds with `busy_s` function-seconds in all cost on Cloud Functions + Workflows."""
    fn = bp.functions
    scratch = Plan(bp.name, bp.topology, bp.cloud, bp.region, "", 0, 0, 0.0, "", 0.0, 0.0, 0.0)
    _line(scratch, "Cloud Functions vCPU time", busy_s * fn.vcpu, "gcf.vcpu_s")
    _line(scratch, "Cloud Functions memory time", busy_s * fn.memory_gib, "gcf.gib_s")
    _line(scratch, "Cloud Functions requests", rounds * (fn.shards + 1), "gcf.request")
    _line(scratch, "Cloud Workflows steps", rounds * (fn.shards + WORKFLOW_STEPS_PER_ROUND), "workflows.step")
    return scratch.lines


def _node_hours(plan: Plan, bp: Blueprint, spec, devices: D.Devices, hours) -> float:
    g = bp.gpu
    gpu, count = L.gpu_of(bp.cloud, g.instance_type, g.accelerator_type, g.accelerator_count)
    total_gpus = count * g.nodes
    scaling = D.MULTI_GPU_EFFICIENCY if total_gpus > 1 else 1.0
    rate = devices.gpu_rate(gpu.name, spec.precision) * total_gpus * scaling
    plan.workers = f"{g.nodes} x {g.instance_type} ({count}x {gpu.name}){' spot' if g.spot else ''}"
    plan.worker_flops = rate
    plan.train_s = plan.flops / rate
    save_s = checkpoint_bytes(spec.model, spec) / D.STORE_BYTES_PER_S["vm"]
    wall = D.COLD_START_S["vm"] + plan.train_s * (1 + save_s / g.checkpoint_every_s)
    if g.spot:  # expected rework: half a checkpoint interval plus a restart per interruption
        interruptions = D.SPOT_INTERRUPTIONS_PER_HOUR * wall / 3600
        wall += interruptions * (g.checkpoint_every_s / 2 + D.COLD_START_S["vm"])
        plan.notes.append(f"spot: ~{interruptions:.1f} interruption(s) expected at "
                          f"{D.SPOT_INTERRUPTIONS_PER_HOUR:g}/h, each costing "
                          f"~{g.checkpoint_every_s / 2 + D.COLD_START_S['vm']:.0f} s")
    plan.wall_s = hours * 3600 if hours is not None else wall
    node_h = plan.wall_s / 3600 * g.nodes
    for line in node_hour_lines(bp, g.spot):
        _line(plan, line[0], node_h * line[1], line[2])
    on_demand = node_h * node_hourly_usd(bp, spot=False)
    spot = node_h * node_hourly_usd(bp, spot=True)
    disk = ("EBS root volume", "ebs.gb_month") if bp.cloud == "aws" else ("Persistent Disk (boot)", "pd.gb_month")
    _line(plan, disk[0], g.root_volume_gb * g.nodes * plan.wall_s / MONTH_S, disk[1])
    plan.alternative = {"on-demand instances": on_demand, "spot instances": spot}
    return plan.wall_s


def _gpu_node(plan: Plan, bp: Blueprint, spec, devices: D.Devices, hours) -> None:
    wall = _node_hours(plan, bp, spec, devices, hours)
    saves = max(1, int(wall // bp.gpu.checkpoint_every_s))
    objects = CHECKPOINT_OBJECTS + _parts(checkpoint_bytes(spec.model, spec))
    _storage(plan, bp, spec, wall, saves * objects, 2 * objects, 1)


def _hybrid(plan: Plan, bp: Blueprint, spec, devices: D.Devices, hours) -> None:
    """Preprocess fan-out, then the node (which checkpoints, and evaluates itself every `eval_every` steps),
    then one evaluation Lambda scoring the final checkpoint after the node stops (what the pipeline runs:
    relaytrain.aws.constructs.hybrid), its time added to the wall time."""
    pre, ev = bp.preprocess, bp.evaluate
    pre_vcpu = lambda_vcpu(pre.memory_mb)
    pre_s = plan.tokens / (D.PREPROCESS_TOKENS_PER_VCPU_S * pre_vcpu)
    objects = max(1, math.ceil(plan.tokens * 4 / 64e6))  # raw text ~4 bytes per token, 64 MB objects
    fanout = min(objects, pre.max_concurrency or L.LAMBDA_CONCURRENCY)
    pre_wall = pre_s / fanout + D.COLD_START_S["lambda"]
    wall = _node_hours(plan, bp, spec, devices, hours)
    saves = max(1, int(wall // bp.gpu.checkpoint_every_s))
    ev_vcpu = lambda_vcpu(ev.memory_mb)
    ev_tokens = spec.eval_batches * spec.tokens_per_step
    ev_s = (D.COLD_START_S["lambda"] + 4 * plan.params / D.STORE_BYTES_PER_S["lambda"]
            + ev_tokens * flops_per_token(spec.model, spec.sequence_length) / 3
            / (ev_vcpu * devices.cpu_flops_per_vcpu))
    plan.workers += f"; preprocess {fanout} x Lambda {pre.memory_mb} MB; evaluate Lambda {ev.memory_mb} MB"
    plan.wall_s = pre_wall + wall + ev_s
    plan.notes.append(f"preprocess ~{plan.tokens / 1e6:,.0f}M tokens in {objects} object(s) (~{pre_wall:.0f} s wall); "
                      f"one evaluation of the final checkpoint after training (~{ev_s:.0f} s, in the wall time)"
                      + (f"; the node evaluates every {spec.eval_every} steps itself" if spec.eval_every else ""))
    _line(plan, "Lambda compute, preprocess", (pre_s + objects * D.COLD_START_S["lambda"]) * pre.memory_mb / 1024,
          f"lambda.gb_s.{pre.architecture}")
    _line(plan, "Lambda compute, evaluate", ev_s * ev.memory_mb / 1024, f"lambda.gb_s.{ev.architecture}")
    _line(plan, "Lambda requests", objects + 1, "lambda.request")
    _line(plan, "Step Functions transitions", 2 * objects + 3 + 10, "sfn.transition")
    ckpt_objects = CHECKPOINT_OBJECTS + _parts(checkpoint_bytes(spec.model, spec))
    _storage(plan, bp, spec, plan.wall_s, saves * ckpt_objects + 2 * objects, CHECKPOINT_OBJECTS + objects, 1)
