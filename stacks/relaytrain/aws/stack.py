"""RelaytrainStack: the whole AWS topology of one blueprint."""

from __future__ import annotations

import pathlib

from aws_cdk import Annotations, CfnOutput, CfnResource, Stack, Tags
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from relaytrain.aws import nag
from relaytrain.aws.constructs import (
    DatasetBucket,
    EfsCache,
    GpuTrainingNode,
    HybridPipeline,
    LambdaStepTrainer,
    RunObservability,
    StageFunction,
    TrainingNetwork,
)
from relaytrain.aws.constructs.step_trainer import HANDLER
from relaytrain.aws.names import stack_name
from relaytrain.blueprint.schema import Blueprint, Lambda
from relaytrain.blueprint.validate import ECR_IMAGE_RE
from relaytrain.worker import (
    DATA_PREFIX,
    RUN_PREFIX,
    cache_environment,
    node_environment,
    node_price_flags,
    preparation,
    run_store,
    spec_payload,
)
from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.prepare import PRETRAINED
from relaytrain_runtime.store.confine import RUN_PREFIX_ENV, SOURCE_PREFIX_ENV

ROOT = pathlib.Path(__file__).resolve().parents[3]
RUNTIME_DIR = ROOT / "runtime"  # build context of the runtime image (runtime/Dockerfile)
ASSET_EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/*.egg-info", ".pytest_cache", "build", "dist"]


class RelaytrainStack(Stack):
    """Dataset bucket, workers and orchestration of one AWS blueprint, checked by cdk-nag.

    Outputs: BucketName, StoreUrl (the default run's store), StateMachineArn (lambda-steps, hybrid).
    `legs_per_execution` overrides the continue-as-new interval (default: relaytrain.plan.sfn's) and `leg_max_steps`
    bounds each leg by steps (lambda-steps; tests use small ones).
    """

    def __init__(
        self,
        scope: Construct,
        blueprint: Blueprint,
        *,
        runtime_dir: pathlib.Path = RUNTIME_DIR,
        legs_per_execution: int | None = None,
        leg_max_steps: int | None = None,
        **kwargs,
    ) -> None:
        if blueprint.cloud != "aws":
            raise RelayError(
                f"blueprint {blueprint.name!r}: cloud is {blueprint.cloud!r}; the CDK app builds AWS blueprints only"
            )
        if blueprint.topology == "function-shards":
            raise RelayError(f"blueprint {blueprint.name!r}: topology function-shards runs on GCP only (cloud: gcp)")
        if not (runtime_dir / "Dockerfile").is_file():
            raise RelayError(
                f"runtime image: {runtime_dir / 'Dockerfile'} is missing (the Lambda image is built from it)"
            )
        super().__init__(
            scope, stack_name(blueprint), description=f"relaytrain {blueprint.name}: {blueprint.topology}", **kwargs
        )
        self.blueprint = blueprint
        self.runtime_dir = runtime_dir
        self.spec = spec_payload(blueprint)
        self.run_name = blueprint.name
        self.legs_per_execution = legs_per_execution
        self.leg_max_steps = leg_max_steps
        for key, value in {"relaytrain:blueprint": blueprint.name, **blueprint.tags}.items():
            Tags.of(self).add(key, value)

        existing = (
            s3.Bucket.from_bucket_name(self, "ExistingBucket", blueprint.dataset.bucket)
            if blueprint.dataset.bucket
            else None
        )
        self.data = DatasetBucket(self, "Data", bucket=existing)
        self.store = run_store(f"s3://{self.data.bucket.bucket_name}", self.run_name)
        self.state_machine = None
        self.functions: list[lambda_.IFunction] = []
        self._repository: ecr.IRepository | None = None
        build = {"lambda-steps": self._lambda_steps, "gpu-node": self._gpu_node, "hybrid": self._hybrid}[
            blueprint.topology
        ]
        build()
        self._acknowledge_cdk_handlers()
        if self._repository is not None:
            # the functions may pull the prebuilt image's repository and no other (no GetAuthorizationToken:
            # Lambda itself fetches the image, through the repository policy that admits lambda.amazonaws.com)
            for function in self.functions:
                self._repository.grant(function, "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")

        self.add_output("BucketName", self.data.bucket.bucket_name)
        self.add_output("StoreUrl", self.store)
        if self.state_machine is not None:
            self.add_output("StateMachineArn", self.state_machine.state_machine_arn)
            RunObservability(
                self,
                "Observability",
                run=self.run_name,
                state_machines=[self.state_machine],
                functions=self.functions,
                budget_usd=blueprint.budget_usd,
                emails=blueprint.alerts.email,
                dashboard_name=stack_name(blueprint),
            )

    # -- topologies -------------------------------------------------------------------------
    def _image(self) -> lambda_.DockerImageCode:
        """The runtime image: the blueprint's prebuilt `image_uri`, else built from runtime/ as an asset."""
        if self.blueprint.image_uri:
            repository, version = self._prebuilt_repository()
            return lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=version, cmd=[HANDLER])
        arch = (self.blueprint.lambda_ or self.blueprint.preprocess).architecture
        return lambda_.DockerImageCode.from_image_asset(
            str(self.runtime_dir),
            cmd=[HANDLER],
            platform=ecr_assets.Platform.LINUX_ARM64 if arch == "arm64" else ecr_assets.Platform.LINUX_AMD64,
        )

    def _prebuilt_repository(self) -> tuple[ecr.IRepository, str]:
        """The ECR repository of `image_uri` (imported once per stack) and its tag or digest."""
        match = ECR_IMAGE_RE.match(self.blueprint.image_uri)
        if match is None:  # validation refuses it first; a stack built from an unvalidated blueprint lands here
            raise RelayError(f"blueprint {self.blueprint.name!r}: image_uri {self.blueprint.image_uri!r} is not an "
                             "ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY@sha256:DIGEST)")
        if self._repository is None:
            name = match.group("repository")
            arn = self.format_arn(service="ecr", account=match.group("account"), region=match.group("region"),
                                  resource="repository", resource_name=name)
            self._repository = ecr.Repository.from_repository_attributes(
                self, "RuntimeRepository", repository_arn=arn, repository_name=name)
        return self._repository, match.group("digest") or match.group("tag")

    def _stage_props(self, config: Lambda, **environment: str) -> dict:
        return dict(
            code=self._image(),
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
            ephemeral_mb=config.ephemeral_mb,
            architecture=config.architecture,
            # the leg stops RELAYTRAIN_MARGIN_S before the deadline
            environment={"RELAYTRAIN_MARGIN_S": str(config.leg_margin_s), **cache_environment(self.blueprint),
                         **environment},
        )

    def _lambda_steps(self) -> None:
        bp = self.blueprint
        config = bp.lambda_
        props = self._stage_props(config)
        if bp.cache.enabled:
            network = TrainingNetwork(self, "Network")
            cache = EfsCache(self, "Cache", vpc=network.vpc, workers=network.worker_security_group)
            props.update(
                vpc=network.vpc,
                subnets=network.isolated_subnets,
                security_groups=[network.worker_security_group],
                access_point=cache.access_point,
                mount_path=bp.cache.path,
            )
        trainer = LambdaStepTrainer(
            self,
            "StepTrainer",
            store_root=f"s3://{self.data.bucket.bucket_name}/{RUN_PREFIX.rstrip('/')}",
            spec=self.spec,
            budget_usd=bp.budget_usd,
            retries=config.retries,
            legs_per_execution=self.legs_per_execution,
            leg_max_steps=self.leg_max_steps,
            state_machine_name=f"{stack_name(bp)}-legs",
            **props,
        )
        if bp.cache.enabled:  # the function's mount asks for an NFS egress rule the group has already
            Annotations.of(props["security_groups"][0]).acknowledge_warning(
                "@aws-cdk/aws-ec2:ipv4IgnoreEgressRule", "the workers' group allows all outbound traffic, NFS included")
        self.data.grant_prefix_read_write(trainer.function, RUN_PREFIX)
        self.data.grant_prefix_read(trainer.function, DATA_PREFIX)
        self.state_machine = trainer.state_machine
        self.functions = [trainer.function]
        self.trainer = trainer

    def _runtime_asset(self) -> s3_assets.Asset:
        return s3_assets.Asset(self, "RuntimeSource", path=str(self.runtime_dir), exclude=ASSET_EXCLUDE)

    def _node(self, network: TrainingNetwork, *, launch: bool) -> GpuTrainingNode:
        gpu = self.blueprint.gpu
        assert gpu is not None  # the schema's topology check guarantees it; validated again below
        node = GpuTrainingNode(
            self,
            "GpuNode",
            vpc=network.vpc,
            security_group=network.worker_security_group,
            runtime_asset=self._runtime_asset(),
            spec=self.spec,
            store=self.store if launch else "",
            launch=launch,
            instance_type=gpu.instance_type,
            nodes=gpu.nodes,
            spot=gpu.spot,
            root_volume_gb=gpu.root_volume_gb,
            checkpoint_every_s=gpu.checkpoint_every_s,
            image_parameter=gpu.image,
            node_options=node_price_flags(self.blueprint),
            environment=node_environment(self.blueprint),
            budget_usd=self.blueprint.budget_usd,
        )
        self.data.grant_prefix_read_write(node.role, RUN_PREFIX)
        self.data.grant_prefix_read(node.role, DATA_PREFIX)
        return node

    def _gpu_node(self) -> None:
        self._require_gpu()
        network = TrainingNetwork(self, "Network", public_subnets=True)
        self.gpu_node = self._node(network, launch=True)
        RunObservability(self, "Observability", run=self.run_name, budget_usd=self.blueprint.budget_usd,
                         emails=self.blueprint.alerts.email, dashboard_name=stack_name(self.blueprint))

    def _hybrid(self) -> None:
        self._require_gpu()
        bp = self.blueprint
        network = TrainingNetwork(self, "Network", public_subnets=True)
        node = self._node(network, launch=False)
        pre_cfg, eval_cfg = bp.preprocess, bp.evaluate
        # the only prefix preprocessing may read sources under (the runtime's store.confine checks events against it)
        sources = {SOURCE_PREFIX_ENV: f"s3://{self.data.bucket.bucket_name}/{bp.dataset.raw_prefix}"}
        pretrained = bp.dataset.tokenizer == PRETRAINED  # the tokenizer of the run's stored base, read from its store
        if pretrained:
            sources[RUN_PREFIX_ENV] = f"s3://{self.data.bucket.bucket_name}/{RUN_PREFIX}"
        preprocess = StageFunction(
            self,
            "Preprocess",
            description="relaytrain preprocess (one raw object per invocation)",
            **self._stage_props(pre_cfg, **sources),
        )
        evaluate = StageFunction(
            self,
            "Evaluate",
            description="relaytrain evaluate (one checkpoint per invocation)",
            **self._stage_props(eval_cfg),
        )
        raw = bp.dataset.raw_prefix
        bucket = self.data.bucket.bucket_name
        # preprocessing writes the dataset the spec names (an s3:// URL), else s3://BUCKET/data/RUN
        dataset = bp.training.dataset if bp.training.dataset.startswith("s3://") else f"s3://{bucket}/{DATA_PREFIX}{self.run_name}"
        self.data.grant_prefix_read(preprocess.function, raw)
        self.data.grant_prefix_read_write(preprocess.function, DATA_PREFIX)
        if pretrained:
            self.data.grant_prefix_read(preprocess.function, RUN_PREFIX)
        self.data.grant_prefix_read_write(evaluate.function, RUN_PREFIX)
        self.data.grant_prefix_read(evaluate.function, DATA_PREFIX)
        pipeline = HybridPipeline(
            self,
            "Pipeline",
            bucket=self.data.bucket,
            run_prefix=RUN_PREFIX,
            dataset_store=dataset,
            source=f"s3://{bucket}/{raw}",
            preprocess=preprocess.function,
            evaluate=evaluate.function,
            preparation=preparation(bp),
            launch_template=node.launch_template,
            node_role=node.role,
            placement_group=node.placement_group,
            subnet_id=network.vpc.public_subnets[0].subnet_id,
            nodes=bp.gpu.nodes,
            spot=bp.gpu.spot,
            retries=pre_cfg.retries,
            stage_timeout_s=max(pre_cfg.timeout_s, eval_cfg.timeout_s),
            max_concurrency=pre_cfg.max_concurrency,
            state_machine_name=f"{stack_name(bp)}-pipeline",
        )
        nag.checkov_skip(preprocess.function, "CKV_AWS_115", "its fan-out is bounded by the Distributed Map's "
                         "max_concurrency (preprocess.max_concurrency); reserving it would take from the account pool")
        nag.checkov_skip(evaluate.function, "CKV_AWS_115", "one invocation per pipeline execution; a reservation "
                         "would throttle the evaluations of concurrent runs")
        self.state_machine = pipeline.state_machine
        self.functions = [preprocess.function, evaluate.function]
        self.gpu_node = node

    def _acknowledge_cdk_handlers(self) -> None:
        """CDK's own custom-resource handlers (restricting the default security group) run once per deploy."""
        reason = "CDK's own custom-resource handler, invoked by CloudFormation once per deployment"
        for child in self.node.find_all():
            if isinstance(child, CfnResource) and child.cfn_resource_type == "AWS::Lambda::Function" \
                    and child.node.path.startswith(f"{self.node.path}/Custom::"):
                for check in ("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117"):
                    nag.checkov_skip(child, check, reason)

    def _require_gpu(self) -> None:
        if self.blueprint.gpu is None:
            raise RelayError(
                f"blueprint {self.blueprint.name!r}: topology {self.blueprint.topology} needs a gpu: section"
            )

    def add_output(self, name: str, value: str) -> None:
        CfnOutput(self, name, value=value)
