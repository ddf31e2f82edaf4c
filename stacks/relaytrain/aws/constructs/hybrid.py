"""HybridPipeline: serverless preprocessing and evaluation around GPU training, in one state machine."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Names, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from relaytrain.aws import nag
from relaytrain.aws.constructs.core import lambda_task, logged_state_machine
from relaytrain_runtime.contract.prepare import PRETRAINED

TOKEN_KEY = "control/gpu-node-task.json"  # under the run's store; the node answers the token when done
# what RunInstances creates: IDs unknown before the call, so its grants name them by wildcard
CREATED_BY_RUN_INSTANCES = ("instance", "volume", "network-interface", "spot-instances-request")


class HybridPipeline(Construct):
    """preprocess (plan, then a Distributed Map with one invocation per raw-text object, then the
    manifest) -> GPU training (wait for the node's task token) -> evaluate the final checkpoint.

    Execution input: `{"run": NAME}`; the run's store is `s3://BUCKET/RUN_PREFIX/NAME`; raw text
    objects under the URL `source` become the dataset at `dataset_store`, prepared with `preparation`
    (the plan event's settings, relaytrain.worker.preparation; for a `pretrained` tokenizer the event
    also names the run's store, whose stored base holds the tokenizer). The GPU nodes are started
    from `launch_template` (`nodes` of them, tagged with the store URL) and terminated, their spot
    requests cancelled, once they report (or the wait fails).

    Each chain has its builder: `_preprocess`, `_start_nodes`, `_train_on_gpu` (with
    `_release_nodes` after it), `_evaluate`; `_acknowledge` and `_grant_nodes` finish the wiring.

    Exposes: `state_machine`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket: s3.IBucket,
        run_prefix: str,
        dataset_store: str,
        source: str,
        preprocess: lambda_.IFunction,
        evaluate: lambda_.IFunction,
        preparation: dict | None = None,
        launch_template: ec2.LaunchTemplate,
        node_role: iam.IRole,
        placement_group: ec2.PlacementGroup | None = None,
        subnet_id: str,
        nodes: int = 1,
        spot: bool = False,
        retries: int = 3,
        stage_timeout_s: int = 900,
        max_concurrency: int = 0,
        training_timeout: Duration | None = None,
        state_machine_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self._stack = Stack.of(self)
        self._retries, self._stage_timeout_s, self._spot = retries, stage_timeout_s, spot
        name = state_machine_name or Names.unique_resource_name(self, max_length=80, separator="-")
        self_arn = self._stack.format_arn(service="states", resource="stateMachine", resource_name=name,
                                          arn_format=ArnFormat.COLON_RESOURCE_NAME)
        store = f"States.Format('s3://{bucket.bucket_name}/{run_prefix}{{}}', $.run)"
        start = sfn.Pass(self, "StartRun", parameters={"run.$": "$.run", "store.$": store})
        plan, fan_out, manifest = self._preprocess(preprocess, dataset_store, source, preparation or {},
                                                   max_concurrency)
        refused = sfn.Fail(self, "StageRefused", error="StageError",
                           cause="a preprocess or evaluate stage returned an error (see the execution history)")
        run_nodes = self._start_nodes(launch_template, node_role, placement_group, subnet_id, nodes)
        wait = self._train_on_gpu(bucket, run_prefix, training_timeout)
        evaluate_final = self._evaluate(evaluate)
        chain = (
            start.next(plan)
            .next(self._unless_error("PlanOk?", "$.plan", refused, fan_out))
            .next(manifest)
            .next(self._unless_error("ManifestOk?", "$.dataset", refused, run_nodes))
            .next(wait)
            .next(self._release_nodes(""))
            .next(evaluate_final)
        )
        chain.next(sfn.Choice(self, "EvaluateOk?").when(sfn.Condition.is_present("$.evaluation.status.error"), refused)
                   .otherwise(sfn.Succeed(self, "PipelineDone")))

        self.log_group, self.state_machine = logged_state_machine(self, name, chain, [preprocess, evaluate])
        self._acknowledge(bucket, run_prefix)
        self._grant_nodes(node_role, self_arn)

    def _unless_error(self, id: str, result: str, refused: sfn.Fail, then: sfn.IChainable) -> sfn.Chain:
        """A choice: to `refused` when the stage reply at `result` carries an error, else on to `then`."""
        has_error = sfn.Condition.is_present(f"{result}.status.error")
        return sfn.Choice(self, id).when(has_error, refused).otherwise(then).afterwards()

    def _preprocess(self, function: lambda_.IFunction, dataset_store: str, source: str, preparation: dict,
                    max_concurrency: int) -> tuple[tasks.LambdaInvoke, sfn.DistributedMap, tasks.LambdaInvoke]:
        """plan (tokenizer, one event per raw object) -> one shard per object (Distributed Map) -> manifest."""
        stage = {"retries": self._retries, "timeout_s": self._stage_timeout_s}
        run_store = {"run_store.$": "$.store"} if preparation.get("tokenizer") == PRETRAINED else {}
        plan = lambda_task(
            self, "PlanPreprocess", function,
            {"op": "preprocess", "phase": "plan", "store": dataset_store, "source": source, **preparation,
             **run_store},
            result_path="$.plan", **stage,
        )
        fan_out = sfn.DistributedMap(
            self,
            "Preprocess",
            items_path="$.plan.status.items",
            item_selector={"event.$": "$$.Map.Item.Value"},
            max_concurrency=max_concurrency or None,
            result_path=sfn.JsonPath.DISCARD,
        )
        fan_out.item_processor(
            lambda_task(self, "PreprocessObject", function, sfn.TaskInput.from_json_path_at("$.event"),
                        result_path="$.result", **stage)
        )
        manifest = lambda_task(
            self, "WriteManifest", function, {"op": "preprocess", "phase": "manifest", "store": dataset_store},
            result_path="$.dataset", **stage,
        )
        return plan, fan_out, manifest

    def _ec2_arn(self, kind: str, name: str = "*", **kwargs) -> str:
        return self._stack.format_arn(service="ec2", resource=kind, resource_name=name, **kwargs)

    def _start_nodes(self, launch_template: ec2.LaunchTemplate, node_role: iam.IRole,
                     placement_group: ec2.PlacementGroup | None, subnet_id: str, nodes: int) -> tasks.CallAwsService:
        """RunInstances from the launch template, tagged with the run's store; the node role passed to them."""
        created = [self._ec2_arn(kind) for kind in CREATED_BY_RUN_INSTANCES]
        security_groups = [self._ec2_arn("security-group", g.security_group_id)
                           for g in launch_template.connections.security_groups]
        placement = [self._ec2_arn("placement-group", placement_group.placement_group_name)] if placement_group else []
        return tasks.CallAwsService(
            self,
            "StartGpuNodes",
            service="ec2",
            action="runInstances",
            parameters={
                "LaunchTemplate": {"LaunchTemplateId": launch_template.launch_template_id, "Version": "$Latest"},
                "MinCount": nodes,
                "MaxCount": nodes,
                "SubnetId": subnet_id,
                "TagSpecifications": [
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": "relaytrain:store", "Value.$": "$.store"},
                            {"Key": "relaytrain:wait-for-token", "Value": "yes"},
                        ],
                    }
                ],
            },
            iam_resources=created + [
                self._ec2_arn("subnet", subnet_id),
                self._ec2_arn("launch-template", launch_template.launch_template_id),
                self._ec2_arn("image", account=""),
            ] + security_groups + placement,
            additional_iam_statements=[
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[node_role.role_arn]),
                iam.PolicyStatement(
                    actions=["ec2:CreateTags"],
                    resources=[self._ec2_arn(kind) for kind in ("instance", "volume", "spot-instances-request")],
                    conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}},
                ),
            ],
            result_selector={
                "instances.$": "$.Instances[*].InstanceId",
                "spot_requests.$": "$.Instances[*].SpotInstanceRequestId" if self._spot else "States.Array()",
            },
            result_path="$.nodes",
        )

    def _train_on_gpu(self, bucket: s3.IBucket, run_prefix: str,
                      training_timeout: Duration | None) -> tasks.CallAwsService:
        """Hand the task token to the nodes through the store and wait; on failure release the nodes and fail."""
        token_key = f"States.Format('{run_prefix}{{}}/{TOKEN_KEY}', $.run)"
        wait = tasks.CallAwsService(
            self,
            "TrainOnGpu",
            comment="hands the task token to the nodes through the store and waits until they report",
            service="s3",
            action="putObject",
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            parameters={
                "Bucket": bucket.bucket_name,
                "Key.$": token_key,
                "Body": {"token": sfn.JsonPath.task_token, "run.$": "$.run"},
                "ContentType": "application/json",
            },
            iam_resources=[bucket.arn_for_objects(f"{run_prefix}*")],
            iam_action="s3:PutObject",
            task_timeout=sfn.Timeout.duration(training_timeout) if training_timeout else None,
            result_path="$.training",
        )
        failed = sfn.Fail(self, "TrainingFailed", error_path="$.error.Error", cause_path="$.error.Cause")
        wait.add_catch(self._release_nodes("AfterFailure").next(failed), errors=["States.ALL"], result_path="$.error")
        return wait

    def _release_nodes(self, suffix: str) -> sfn.Chain:
        """Cancel the nodes' spot requests (a persistent request would relaunch them), then terminate them."""
        cancel = ("CancelSpotRequests", "cancelSpotInstanceRequests",
                  {"SpotInstanceRequestIds.$": "$.nodes.spot_requests"}, "spot-instances-request")
        calls = [cancel] if self._spot else []
        calls.append(("StopGpuNodes", "terminateInstances", {"InstanceIds.$": "$.nodes.instances"}, "instance"))
        steps = []
        for state, action, parameters, kind in calls:
            step = tasks.CallAwsService(
                self, state + suffix, service="ec2", action=action, parameters=parameters,
                iam_resources=[self._ec2_arn(kind)], result_path=sfn.JsonPath.DISCARD,
            )
            step.add_retry(errors=["States.ALL"], interval=Duration.seconds(5), max_attempts=self._retries,
                           backoff_rate=2.0)
            steps.append(step)
        chain = sfn.Chain.start(steps[0])
        for step in steps[1:]:
            chain = chain.next(step)
        return chain

    def _evaluate(self, function: lambda_.IFunction) -> tasks.LambdaInvoke:
        """Evaluate the run's final checkpoint."""
        return lambda_task(
            self, "Evaluate", function, {"op": "evaluate", "store.$": "$.store"},
            retries=self._retries, timeout_s=self._stage_timeout_s, result_path="$.evaluation",
        )

    def _acknowledge(self, bucket: s3.IBucket, run_prefix: str) -> None:
        """The state machine role's wildcard resources, each with the reason AWS leaves no narrower form."""
        stack, machine = self._stack, self.state_machine
        # as cdk-nag prints the account: a token without credentials, the literal ID when the CLI found one
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        region = stack.region
        for kind in CREATED_BY_RUN_INSTANCES:
            nag.ack(machine, f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{region}:{account}:{kind}/*]",
                    f"RunInstances/TerminateInstances act on {kind}s created by the call, "
                    "whose IDs are unknown beforehand")
        nag.ack(machine, f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{region}::image/*]",
                "the Deep Learning AMI is resolved from its public SSM parameter at each launch")
        machine_id = stack.resolve(stack.get_logical_id(machine.node.default_child))
        name = f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine_id}"}}]}}]}}'
        executions = f"arn:aws:states:{region}:{account}:execution:{name}"
        for suffix in ("/*:*", ":*"):
            nag.ack(machine, f"AwsSolutions-IAM5[Resource::{executions}{suffix}]",
                    "the Distributed Map runs and redrives its own child executions, named at run time")
        nag.ack(machine, f"AwsSolutions-IAM5[Resource::{nag.arn_ref(bucket, '/' + run_prefix + '*')}]",
                "the task-token object is written under the runs prefix of the dataset bucket")

    def _grant_nodes(self, node_role: iam.IRole, self_arn: str) -> None:
        """The nodes answer the task token of this state machine and find node 0 for the rendezvous."""
        node_role.add_to_principal_policy(
            iam.PolicyStatement(actions=[f"states:SendTask{kind}" for kind in ("Success", "Failure", "Heartbeat")],
                                resources=[self_arn])
        )
        node_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])  # no resource-level form
        )  # acknowledged with the node role's other Resource::* grant (GpuTrainingNode)
