"""HybridPipeline: serverless preprocessing and evaluation around GPU training, in one state machine."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Names, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from relaytrain.aws import nag
from relaytrain.aws.constructs.step_trainer import lambda_task, logged_state_machine

TOKEN_KEY = "control/gpu-node-task.json"  # under the run's store; the node answers the token when done


class HybridPipeline(Construct):
    """preprocess (plan, then a Distributed Map with one invocation per raw-text object, then the
    manifest) -> GPU training (wait for the node's task token) -> evaluate the final checkpoint.

    Execution input: `{"run": NAME}`; the run's store is `s3://BUCKET/RUN_PREFIX/NAME`; raw text
    objects under the URL `source` become the dataset at `dataset_store`. The GPU nodes are started
    from `launch_template` (`nodes` of them, tagged with the store URL) and terminated, their spot
    requests cancelled, once they report (or the wait fails).

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
        stack = Stack.of(self)
        name = state_machine_name or Names.unique_resource_name(self, max_length=80, separator="-")
        self_arn = stack.format_arn(service="states", resource="stateMachine", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME)
        store = f"States.Format('s3://{bucket.bucket_name}/{run_prefix}{{}}', $.run)"
        start = sfn.Pass(self, "StartRun", parameters={"run.$": "$.run", "store.$": store})

        # preprocess: plan (tokenizer, one event per raw object) -> one shard per object -> manifest
        plan = lambda_task(
            self, "PlanPreprocess", preprocess,
            {"op": "preprocess", "phase": "plan", "store": dataset_store, "source": source},
            retries=retries, timeout_s=stage_timeout_s, result_path="$.plan",
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
            lambda_task(self, "PreprocessObject", preprocess, sfn.TaskInput.from_json_path_at("$.event"),
                        retries=retries, timeout_s=stage_timeout_s, result_path="$.result")
        )
        manifest = lambda_task(
            self, "WriteManifest", preprocess, {"op": "preprocess", "phase": "manifest", "store": dataset_store},
            retries=retries, timeout_s=stage_timeout_s, result_path="$.dataset",
        )
        refused = sfn.Fail(self, "StageRefused", error="StageError", cause="a preprocess or evaluate stage returned an error (see the execution history)")

        run_nodes = tasks.CallAwsService(
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
            iam_resources=[
                stack.format_arn(service="ec2", resource="instance", resource_name="*"),
                stack.format_arn(service="ec2", resource="volume", resource_name="*"),
                stack.format_arn(service="ec2", resource="network-interface", resource_name="*"),
                stack.format_arn(service="ec2", resource="spot-instances-request", resource_name="*"),
                stack.format_arn(service="ec2", resource="subnet", resource_name=subnet_id),
                stack.format_arn(service="ec2", resource="launch-template", resource_name=launch_template.launch_template_id),
                stack.format_arn(service="ec2", resource="image", resource_name="*", account=""),
            ]
            + [stack.format_arn(service="ec2", resource="security-group", resource_name=g.security_group_id) for g in launch_template.connections.security_groups]
            + ([stack.format_arn(service="ec2", resource="placement-group", resource_name=placement_group.placement_group_name)] if placement_group else []),
            additional_iam_statements=[
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[node_role.role_arn]),
                iam.PolicyStatement(
                    actions=["ec2:CreateTags"],
                    resources=[stack.format_arn(service="ec2", resource="instance", resource_name="*"),
                               stack.format_arn(service="ec2", resource="volume", resource_name="*"),
                               stack.format_arn(service="ec2", resource="spot-instances-request", resource_name="*")],
                    conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}},
                ),
            ],
            result_selector={
                "instances.$": "$.Instances[*].InstanceId",
                "spot_requests.$": "$.Instances[*].SpotInstanceRequestId" if spot else "States.Array()",
            },
            result_path="$.nodes",
        )
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
        def release_nodes(suffix: str) -> sfn.Chain:
            """Cancel the nodes' spot requests (a persistent request would relaunch them), then terminate them."""
            calls = [("CancelSpotRequests", "cancelSpotInstanceRequests", {"SpotInstanceRequestIds.$": "$.nodes.spot_requests"},
                      "spot-instances-request")] if spot else []
            calls.append(("StopGpuNodes", "terminateInstances", {"InstanceIds.$": "$.nodes.instances"}, "instance"))
            steps = []
            for state, action, parameters, kind in calls:
                step = tasks.CallAwsService(
                    self, state + suffix, service="ec2", action=action, parameters=parameters,
                    iam_resources=[stack.format_arn(service="ec2", resource=kind, resource_name="*")],
                    result_path=sfn.JsonPath.DISCARD,
                )
                step.add_retry(errors=["States.ALL"], interval=Duration.seconds(5), max_attempts=retries, backoff_rate=2.0)
                steps.append(step)
            chain = sfn.Chain.start(steps[0])
            for step in steps[1:]:
                chain = chain.next(step)
            return chain

        wait.add_catch(
            release_nodes("AfterFailure").next(sfn.Fail(self, "TrainingFailed", error_path="$.error.Error", cause_path="$.error.Cause")),
            errors=["States.ALL"],
            result_path="$.error",
        )

        evaluate_final = lambda_task(
            self, "Evaluate", evaluate, {"op": "evaluate", "store.$": "$.store"},
            retries=retries, timeout_s=stage_timeout_s, result_path="$.evaluation",
        )
        chain = (
            start.next(plan)
            .next(sfn.Choice(self, "PlanOk?").when(sfn.Condition.is_present("$.plan.status.error"), refused).otherwise(fan_out).afterwards())
            .next(manifest)
            .next(sfn.Choice(self, "ManifestOk?").when(sfn.Condition.is_present("$.dataset.status.error"), refused).otherwise(run_nodes).afterwards())
            .next(wait)
            .next(release_nodes(""))
            .next(evaluate_final)
        )
        chain.next(sfn.Choice(self, "EvaluateOk?").when(sfn.Condition.is_present("$.evaluation.status.error"), refused)
                   .otherwise(sfn.Succeed(self, "PipelineDone")))

        self.log_group, self.state_machine = logged_state_machine(self, name, chain, [preprocess, evaluate])
        region, account = stack.region, "<AWS::AccountId>"
        for kind in ("instance", "volume", "network-interface", "spot-instances-request"):
            nag.ack(self.state_machine, f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{region}:{account}:{kind}/*]",
                    f"RunInstances/TerminateInstances act on {kind}s created by the call, whose IDs are unknown beforehand")
        nag.ack(self.state_machine, f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{region}::image/*]",
                "the Deep Learning AMI is resolved from its public SSM parameter at each launch")
        machine_id = stack.resolve(stack.get_logical_id(self.state_machine.node.default_child))
        executions = f'arn:aws:states:{region}:{account}:execution:{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine_id}"}}]}}]}}'
        for suffix in ("/*:*", ":*"):
            nag.ack(self.state_machine, f"AwsSolutions-IAM5[Resource::{executions}{suffix}]",
                    "the Distributed Map runs and redrives its own child executions, named at run time")
        nag.ack(self.state_machine, f"AwsSolutions-IAM5[Resource::{nag.arn_ref(bucket, '/' + run_prefix + '*')}]",
                "the task-token object is written under the runs prefix of the dataset bucket")
        # The nodes answer the task token of this state machine.
        node_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"], resources=[self_arn])
        )
        node_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])  # finds node 0 for the rendezvous
        )  # acknowledged with the node role's other Resource::* grant (GpuTrainingNode)

