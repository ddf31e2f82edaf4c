"""Checks a schema-valid blueprint against platform limits, topology rules and training memory.

`resolve(bp)` fills the opinionated defaults (region, the topology's worker section, instance
type); `check(bp)` returns every problem as (field path, message), the limit in each message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relaytrain.blueprint import limits as L
from relaytrain.blueprint.dataset import dataset_problems, preparation_problems
from relaytrain.blueprint.memory import GIB, Memory, checkpoint_bytes, training_memory
from relaytrain.blueprint.schema import SHARDS_FIELDS, Blueprint, Functions, Gpu, Lambda
from relaytrain.blueprint.tags import aws_tag_problems
from relaytrain_runtime.shards.config import ShardsConfig
from relaytrain_runtime.spec import RunSpec

Problem = tuple[tuple, str]

# which worker sections each topology takes
SECTIONS = {
    "lambda-steps": ("lambda",),
    "function-shards": ("functions",),
    "gpu-node": ("gpu",),
    "hybrid": ("gpu", "preprocess", "evaluate"),
}
ALL_SECTIONS = ("lambda", "functions", "gpu", "preprocess", "evaluate")
CLOUDS = {"lambda-steps": ("aws",), "function-shards": ("gcp",), "gpu-node": ("aws", "gcp"), "hybrid": ("aws",)}

MLFLOW_SCHEMES = ("http", "https", "databricks", "file", "sqlite", "postgresql", "mysql", "mssql")
LOCAL_MLFLOW_SCHEMES = ("file", "sqlite")  # this machine's files: not for workers in the cloud
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_EMAILS = 16
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
GCP_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GCP_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
# an ECR image: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY then :TAG or @sha256:DIGEST
ECR_IMAGE_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
    r"(?P<repository>(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$"
)


def _section(bp: Blueprint, name: str):
    return getattr(bp, "lambda_" if name == "lambda" else name)


def resolve(bp: Blueprint) -> Blueprint:
    """The blueprint with its defaults filled in, so every reader sees the same complete topology:
    region, each worker section the topology takes, the instance type, its image, its zone and GPUs,
    and the function-shards instance ceiling. Nothing downstream fills a default again."""
    update: dict = {}
    if not bp.region and bp.cloud in L.DEFAULT_REGION:
        update["region"] = L.DEFAULT_REGION[bp.cloud]
    region = update.get("region", bp.region)
    wanted = SECTIONS.get(bp.topology, ())
    if "lambda" in wanted and bp.lambda_ is None:
        update["lambda_"] = Lambda()
    if "functions" in wanted:
        fn = bp.functions or Functions()
        update["functions"] = fn if fn.max_instances else fn.model_copy(update={"max_instances": fn.shards})
    if "preprocess" in wanted and bp.preprocess is None:
        update["preprocess"] = Lambda(memory_mb=2048, ephemeral_mb=2048)
    if "evaluate" in wanted and bp.evaluate is None:
        update["evaluate"] = Lambda()
    if "gpu" in wanted:
        update["gpu"] = _resolve_gpu(bp.cloud, region, bp.gpu or Gpu())
    return bp.model_copy(update=update) if update else bp


def _resolve_gpu(cloud: str, region: str, gpu: Gpu) -> Gpu:
    g: dict = {}
    instance_type = gpu.instance_type or L.DEFAULT_INSTANCE[cloud]
    if not gpu.instance_type:
        g["instance_type"] = instance_type
    if not gpu.image and cloud in L.DEFAULT_IMAGE:
        g["image"] = L.DEFAULT_IMAGE[cloud]
    if cloud == "gcp":
        inst = L.GCP_INSTANCES.get(instance_type)
        if inst is not None and not inst.gpu:  # n1: a GPU is attached; V100 unless told
            g["accelerator_type"] = gpu.accelerator_type or L.DEFAULT_GCP_ACCELERATOR
            g["accelerator_count"] = gpu.accelerator_count or 1
        elif inst is not None:  # a2, g2: the machine type comes with its GPUs, stated for reviews and policies
            g["accelerator_type"] = gpu.accelerator_type or L.GPUS[inst.gpu].gcp_name
            g["accelerator_count"] = gpu.accelerator_count or inst.gpus
        if not gpu.zone:
            g["zone"] = f"{region}-{L.DEFAULT_GCP_ZONE_SUFFIX.get(region, 'a')}"
    return gpu.model_copy(update=g) if g else gpu


@dataclass(frozen=True)
class Worker:
    """Where one copy of the model trains: its memory, and the micro-batch it processes."""

    path: tuple  # the field that sets its memory
    memory_bytes: float
    micro_batch: int
    gpu: bool
    label: str
    shards: int = 1  # FSDP: GPUs the weights, gradients and moments are sharded over


def training_worker(bp: Blueprint) -> Worker | None:
    spec = bp.training
    batch = spec.batch_size
    micro = spec.micro_batch_size or batch
    if bp.topology == "lambda-steps" and bp.lambda_:
        return Worker(("lambda", "memory_mb"), bp.lambda_.memory_mb * 1024**2, micro, False,
                      f"a Lambda function with {bp.lambda_.memory_mb} MB")
    if bp.topology == "function-shards" and bp.functions:
        per_shard = max(1, batch // max(1, bp.functions.shards))
        return Worker(("functions", "memory_gib"), bp.functions.memory_gib * GIB, min(micro, per_shard), False,
                      f"a Cloud Function with {bp.functions.memory_gib:g} GiB")
    if bp.topology in ("gpu-node", "hybrid") and bp.gpu:
        gpu, count = L.gpu_of(bp.cloud, bp.gpu.instance_type, bp.gpu.accelerator_type, bp.gpu.accelerator_count)
        if gpu is None:
            return None
        per_gpu = max(1, batch // max(1, count * bp.gpu.nodes))
        shards = count * bp.gpu.nodes if spec.parallelism == "fsdp" else 1
        return Worker(("gpu", "instance_type"), gpu.memory_gib * GIB, min(micro, per_gpu), True,
                      f"one {gpu.name} ({gpu.memory_gib:g} GiB) of {bp.gpu.instance_type}"
                      + (f", FSDP over {shards} GPUs" if shards > 1 else ""), shards)
    return None


def alternatives(bp: Blueprint, need_cpu: Memory, need_gpu: Memory) -> list[str]:
    """Topologies (at their largest worker) where the same training fits."""
    out = []
    if bp.cloud == "aws" and need_cpu.fits(L.LAMBDA_MEMORY_MB[1] * 1024**2):
        out.append(f"lambda-steps (memory_mb: {L.LAMBDA_MEMORY_MB[1]})")
    if need_cpu.fits(L.GCF_MAX_MEMORY_GIB * GIB):
        out.append(f"function-shards (cloud: gcp, memory_gib: {L.GCF_MAX_MEMORY_GIB}, vcpu: 8)")
    gpus = {}  # smallest instance per GPU model and cloud
    for cloud in ("aws", "gcp"):
        for inst in L.instances(cloud).values():
            gpu, _ = L.gpu_of(cloud, inst.name, "" if inst.gpu else "nvidia-tesla-v100", 1)
            if gpu and need_gpu.fits(gpu.memory_gib * GIB):
                gpus.setdefault((cloud, gpu.name), f"gpu-node ({cloud} {inst.name}, {gpu.name} {gpu.memory_gib:g} GiB)")
    return out + list(gpus.values())


def _range(problems, path, value, lo, hi, unit, what):
    if not lo <= value <= hi:
        problems.append((path, f"{value:g} {unit} is outside {what}'s limit of {lo:,}-{hi:,} {unit}"))


def _lambda(problems, section: str, lam: Lambda) -> None:
    p = (section,)
    _range(problems, p + ("memory_mb",), lam.memory_mb, *L.LAMBDA_MEMORY_MB, "MB", "Lambda memory")
    _range(problems, p + ("timeout_s",), lam.timeout_s, *L.LAMBDA_TIMEOUT_S, "s", "the Lambda timeout")
    _range(problems, p + ("ephemeral_mb",), lam.ephemeral_mb, *L.LAMBDA_EPHEMERAL_MB, "MB", "Lambda /tmp")
    if not 0 < lam.image_size_mb <= L.LAMBDA_IMAGE_MB:
        problems.append((p + ("image_size_mb",), f"{lam.image_size_mb:,} MB is over Lambda's container image "
                                                 f"limit of {L.LAMBDA_IMAGE_MB:,} MB (10 GB)"))
    if not 0 <= lam.leg_margin_s < lam.timeout_s:
        problems.append((p + ("leg_margin_s",), f"must be 0..{lam.timeout_s - 1} s (less than timeout_s "
                                                f"{lam.timeout_s}), got {lam.leg_margin_s}"))
    if not 0 <= lam.retries <= 10:
        problems.append((p + ("retries",), f"must be 0..10, got {lam.retries}"))
    if not 0 <= lam.max_concurrency <= L.LAMBDA_CONCURRENCY:
        problems.append((p + ("max_concurrency",), f"must be 0..{L.LAMBDA_CONCURRENCY:,} (the default account "
                                                   f"concurrency per region; 0 = no cap), got {lam.max_concurrency}"))


def _functions(problems, f: Functions, batch: int) -> None:
    """Cloud Functions' limits on the deployment fields, then the runtime's own check of the run fields
    (ShardsConfig.problems) for every field the platform limits did not already flag."""
    p = ("functions",)
    platform: list[Problem] = []
    lo, hi = L.SHARDS
    if not lo <= f.shards <= hi:
        platform.append((p + ("shards",), f"must be {lo}..{hi} (Cloud Functions' default max instances), "
                                          f"got {f.shards}"))
    elif batch % f.shards:
        platform.append((p + ("shards",), f"must divide training.batch_size {batch} so every shard takes the "
                                          f"same number of sequences, got {f.shards}"))
    if f.vcpu not in L.GCF_VCPU_MEMORY_GIB:
        platform.append((p + ("vcpu",), f"must be one of {', '.join(map(str, L.GCF_VCPU_MEMORY_GIB))} "
                                        f"(Cloud Functions 2nd gen, at most 8), got {f.vcpu}"))
    if not 0 < f.memory_gib <= L.GCF_MAX_MEMORY_GIB:
        platform.append((p + ("memory_gib",), f"{f.memory_gib:g} GiB is over Cloud Functions' limit of "
                                              f"{L.GCF_MAX_MEMORY_GIB} GiB"))
    elif f.vcpu in L.GCF_VCPU_MEMORY_GIB:
        mlo, mhi = L.GCF_VCPU_MEMORY_GIB[f.vcpu]
        if not mlo <= f.memory_gib <= mhi:
            pairs = "; ".join(f"{c} vCPU: {a:g}-{b:g} GiB" for c, (a, b) in L.GCF_VCPU_MEMORY_GIB.items())
            platform.append((p + ("memory_gib",), f"{f.memory_gib:g} GiB cannot be paired with {f.vcpu} vCPU "
                                                  f"(allowed: {pairs})"))
    _range(platform, p + ("timeout_s",), f.timeout_s, 1, L.GCF_HTTP_TIMEOUT_S, "s",
           "an HTTP Cloud Function (2nd gen) timeout")
    if f.max_instances and f.max_instances < f.shards:
        platform.append((p + ("max_instances",), f"must be 0 (= shards) or at least shards ({f.shards}), "
                                                 f"got {f.max_instances}"))
    if f.round_deadline_s > f.timeout_s:
        platform.append((p + ("round_deadline_s",), f"must be 0..timeout_s ({f.timeout_s}), got {f.round_deadline_s}"))
    flagged = {path for path, _ in platform}
    problems += platform
    problems += [(p + (name,), msg) for name, msg in ShardsConfig.check(f.model_dump(include=SHARDS_FIELDS))
                 if p + (name,) not in flagged]


def _tracking(problems, uri: str, deployed: bool) -> None:
    """`tracking.mlflow`: an MLflow tracking URI; for deployed workers not a file of this machine."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()  # postgresql of postgresql+psycopg2://, databricks
    path = ("tracking", "mlflow")
    if uri and scheme not in MLFLOW_SCHEMES:
        problems.append((path, f"{uri!r} is not an MLflow tracking URI (accepted schemes: "
                               f"{', '.join(s + ':' for s in MLFLOW_SCHEMES)})"))
    elif uri and deployed and scheme in LOCAL_MLFLOW_SCHEMES:
        problems.append((path, f"{uri!r} is a file on this machine, which a Lambda, Cloud Function or VM cannot "
                               "write: use an http(s):// tracking server (file: is for `relaytrain run --local`)"))


def _alerts(problems, emails: list[str]) -> None:
    if len(emails) > MAX_EMAILS:
        problems.append((("alerts", "email"), f"at most {MAX_EMAILS} addresses, got {len(emails)}"))
    for i, address in enumerate(emails):
        if not EMAIL_RE.match(address):
            problems.append((("alerts", "email", i), f"{address!r} is not an email address (NAME@DOMAIN.TLD)"))
    if len(set(emails)) != len(emails):
        problems.append((("alerts", "email"), "lists an address twice"))


def _gpu(problems, bp: Blueprint, g: Gpu) -> None:
    p = ("gpu",)
    table = L.instances(bp.cloud)
    inst = table.get(g.instance_type)
    if inst is None:
        problems.append((p + ("instance_type",), f"unknown {bp.cloud} instance type {g.instance_type!r} "
                                                 f"(known GPU types: {', '.join(table)})"))
    elif bp.region not in inst.regions:
        problems.append((p + ("instance_type",), f"{g.instance_type} is not offered in {bp.region} (offered in: "
                                                 f"{', '.join(inst.regions)})"))
    if bp.cloud == "aws":
        for field, value in (("accelerator_type", g.accelerator_type), ("accelerator_count", g.accelerator_count),
                             ("zone", g.zone), ("external_ip", g.external_ip)):
            if value:
                problems.append((p + (field,), "is for cloud: gcp only; on aws the instance type implies it"
                                 if field.startswith("acc") else "is for cloud: gcp only"))
    elif inst is not None:
        if inst.gpu:
            implied = L.GPUS[inst.gpu]
            if g.accelerator_type and g.accelerator_type != implied.gcp_name:
                problems.append((p + ("accelerator_type",), f"{g.instance_type} comes with {inst.gpus}x "
                                 f"{implied.gcp_name}; leave it empty or set {implied.gcp_name}"))
            if g.accelerator_count and g.accelerator_count != inst.gpus:
                problems.append((p + ("accelerator_count",), f"{g.instance_type} comes with {inst.gpus} GPU(s), "
                                                             f"got {g.accelerator_count}"))
        elif g.accelerator_type not in L.GCP_ATTACHED:
            problems.append((p + ("accelerator_type",), f"unknown accelerator {g.accelerator_type!r} for "
                             f"{g.instance_type} (choose one of: {', '.join(L.GCP_ATTACHED)})"))
        else:
            counts, regions, vcpu_per_gpu = L.GCP_ATTACHED[g.accelerator_type]
            if g.accelerator_count not in counts:
                problems.append((p + ("accelerator_count",), f"{g.accelerator_type} attaches in counts of "
                                 f"{', '.join(map(str, counts))}, got {g.accelerator_count}"))
            elif inst.vcpu > vcpu_per_gpu * g.accelerator_count:
                problems.append((p + ("instance_type",), f"{g.instance_type} has {inst.vcpu} vCPU, more than "
                                 f"{vcpu_per_gpu} per {g.accelerator_type} allows with {g.accelerator_count} GPU(s)"))
            if bp.region not in regions:
                problems.append((p + ("accelerator_type",), f"{g.accelerator_type} is not offered in {bp.region} "
                                                            f"(offered in: {', '.join(regions)})"))
        if g.zone and not g.zone.startswith(bp.region + "-"):
            problems.append((p + ("zone",), f"zone {g.zone!r} is not in region {bp.region} "
                                            f"(expected {bp.region}-a, -b, ...)"))
    if not 1 <= g.nodes <= 16:
        problems.append((p + ("nodes",), f"must be 1..16, got {g.nodes}"))
    if not 60 <= g.checkpoint_every_s <= 86_400:
        problems.append((p + ("checkpoint_every_s",), f"must be 60..86,400 s, got {g.checkpoint_every_s}"))
    if not 50 <= g.root_volume_gb <= 16_384:
        problems.append((p + ("root_volume_gb",), f"must be 50..16,384 GB (the deep learning image needs 50; "
                                                  f"gp3/pd-balanced top out at 16 TiB), got {g.root_volume_gb}"))


def check(bp: Blueprint, deployed: bool = False) -> list[Problem]:
    """Every problem of `bp`; `deployed`: its workers run in the cloud (synth, launch), not on this machine."""
    problems: list[Problem] = []
    if not NAME_RE.match(bp.name):
        problems.append((("name",), f"{bp.name!r} must be 3-40 characters of a-z, 0-9 and '-', starting with a "
                                    "letter (it names stacks, buckets and functions)"))
    if bp.topology not in CLOUDS or bp.cloud not in CLOUDS[bp.topology]:
        problems.append((("topology",), f"{bp.topology} runs on cloud {' or '.join(CLOUDS[bp.topology])}, "
                                        f"not {bp.cloud}"))
    if bp.region not in L.REGIONS[bp.cloud]:
        problems.append((("region",), f"unknown {bp.cloud} region {bp.region!r} (known: "
                                      f"{', '.join(L.REGIONS[bp.cloud])})"))
    wanted = SECTIONS[bp.topology]
    for name in ALL_SECTIONS:
        if name not in wanted and _section(bp, name) is not None:
            problems.append(((name,), f"is not used by topology {bp.topology} (it takes: {', '.join(wanted)})"))

    spec_problems = _training(problems, bp)
    problems += preparation_problems(bp, None if spec_problems else bp.training.run_spec().model.vocab_size)
    if bp.lambda_ and "lambda" in wanted:
        _lambda(problems, "lambda", bp.lambda_)
    for name in ("preprocess", "evaluate"):
        if name in wanted and _section(bp, name):
            _lambda(problems, name, _section(bp, name))
    if bp.functions and "functions" in wanted:
        _functions(problems, bp.functions, bp.training.batch_size)
    if bp.gpu and "gpu" in wanted:
        _gpu(problems, bp, bp.gpu)
    if bp.cache.max_gb < 0:
        problems.append((("cache", "max_gb"), f"must be >= 0 (0: as much as the cache's filesystem holds), "
                                              f"got {bp.cache.max_gb:g}"))
    lam = bp.lambda_ if bp.topology == "lambda-steps" else None
    if lam and not bp.cache.enabled and bp.cache.max_gb * 1024 > lam.ephemeral_mb:
        problems.append((("cache", "max_gb"), f"{bp.cache.max_gb:g} GB does not fit the Lambda's /tmp "
                                              f"(lambda.ephemeral_mb {lam.ephemeral_mb:,} MB) where the shards are "
                                              f"cached without EFS (cache.enabled: true mounts one)"))
    if bp.cache.enabled and not bp.cache.path.startswith("/mnt/"):
        problems.append((("cache", "path"), f"must be under /mnt/ (where Lambda mounts EFS), got {bp.cache.path!r}"))
    if bp.dataset.bucket and not BUCKET_RE.match(bp.dataset.bucket):
        problems.append((("dataset", "bucket"), f"{bp.dataset.bucket!r} is not a bucket name (3-63 characters of "
                                                "a-z, 0-9, '.', '-')"))
    if bp.budget_usd is not None and not bp.budget_usd > 0:
        problems.append((("budget_usd",), f"must be > 0 (USD), got {bp.budget_usd:g}"))
    _tags(problems, bp)
    _image_uri(problems, bp)
    _tracking(problems, bp.tracking.mlflow, deployed)
    _alerts(problems, bp.alerts.email)
    if not spec_problems and not problems:
        _feasibility(problems, bp)
    return problems


def _training(problems, bp: Blueprint) -> bool:
    """The run spec's own check (RunSpec.problems), each problem pointed at its `training.<field>`."""
    before = len(problems)
    problems += [(("training", name), msg) for name, msg in RunSpec.check(bp.training.model_dump())]
    dataset = bp.training.dataset
    if dataset != "stdlib" and not re.match(r"^(s3|gs|file)://.+", dataset):
        problems.append((("training", "dataset"), f"must be 'stdlib' or a store URL (s3://, gs://, file://), "
                                                  f"got {dataset!r}"))
    else:
        problems += dataset_problems(bp.cloud, bp.dataset.bucket, dataset)
    return len(problems) > before


def _image_uri(problems, bp: Blueprint) -> None:
    if not bp.image_uri:
        return
    match = ECR_IMAGE_RE.match(bp.image_uri)
    if bp.cloud != "aws" or bp.topology == "gpu-node":
        problems.append((("image_uri",), "is used by AWS Lambda workers only (lambda-steps, hybrid); GPU nodes "
                                         "install the runtime from the stack's source asset"))
    elif not match:
        problems.append((("image_uri",), f"{bp.image_uri!r} is not an ECR image URI (ACCOUNT.dkr.ecr.REGION"
                                         ".amazonaws.com/REPOSITORY@sha256:DIGEST, or :TAG)"))
    elif match.group("region") != bp.region:
        problems.append((("image_uri",), f"the image is in {match.group('region')}; Lambda pulls images from "
                                         f"the function's own region ({bp.region})"))


def advice(bp: Blueprint) -> list[Problem]:
    """Not problems, but choices worth a second look: (field path, message)."""
    match = ECR_IMAGE_RE.match(bp.image_uri) if bp.image_uri else None
    if match and match.group("tag"):
        return [(("image_uri",), f"tag {match.group('tag')!r} can be moved to another image; pin the digest "
                                 "(REPOSITORY@sha256:...) that `relaytrain image push` prints")]
    return []


def _tags(problems, bp: Blueprint) -> None:
    if bp.cloud == "aws":
        problems.extend(aws_tag_problems(bp.tags))
    else:
        if len(bp.tags) > 64:
            problems.append((("tags",), f"GCP allows 64 labels per resource, got {len(bp.tags)}"))
        for k, v in bp.tags.items():
            if not GCP_LABEL_KEY_RE.match(k) or not GCP_LABEL_VALUE_RE.match(v):
                problems.append((("tags", k), "GCP label keys start with a lowercase letter; keys and values are "
                                              "at most 63 characters of a-z, 0-9, '_' and '-'"))


def _feasibility(problems, bp: Blueprint) -> None:
    spec = bp.training.run_spec()
    worker = training_worker(bp)
    if worker is None:
        return
    need = training_memory(
        spec.model, worker.micro_batch, spec.sequence_length, gpu=worker.gpu, shards=worker.shards, spec=spec
    )
    if not need.fits(worker.memory_bytes):
        smaller = [m for m in range(worker.micro_batch - 1, 0, -1)
                   if spec.batch_size % m == 0
                   and training_memory(spec.model, m, spec.sequence_length, worker.gpu,
                                       worker.shards, spec).fits(worker.memory_bytes)]
        cpu = training_memory(spec.model, worker.micro_batch, spec.sequence_length, gpu=False, spec=spec)
        gpu = training_memory(spec.model, worker.micro_batch, spec.sequence_length, gpu=True, spec=spec)
        fits = alternatives(bp, cpu, gpu)
        hint = f"; training.micro_batch_size: {smaller[0]} would fit" if smaller else ""
        problems.append((worker.path, f"{spec.preset} training needs {need.describe()}, more than 90 % of "
                                      f"{worker.label}{hint}; fits at this micro-batch: "
                                      f"{', '.join(fits) if fits else 'none of the known workers'}"))
    if bp.topology == "lambda-steps" and bp.lambda_:
        ckpt = checkpoint_bytes(spec.model, spec)
        if ckpt > bp.lambda_.ephemeral_mb * 1024**2:
            problems.append((("lambda", "ephemeral_mb"), f"one {spec.preset} checkpoint is {ckpt / 1024**2:,.0f} MB "
                             f"and must fit in /tmp ({bp.lambda_.ephemeral_mb:,} MB; Lambda allows up to "
                             f"{L.LAMBDA_EPHEMERAL_MB[1]:,})"))
