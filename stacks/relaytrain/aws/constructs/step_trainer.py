"""StageFunction (a Lambda running the runtime image) and LambdaStepTrainer (legs looped by Step Functions)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Names, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from relaytrain.aws import nag
from relaytrain.aws.constructs.core import lambda_task, log_group, logged_state_machine
from relaytrain.plan import sfn as sfn_accounting
from relaytrain_runtime import RelayError

HANDLER = "relaytrain_runtime.handlers.aws_lambda.handler"  # the image CMD; `op` in the event picks the operation



class StageFunction(Construct):
    """A Lambda function from the runtime's container image (x86_64 or arm64).

    One image serves every handler; the event's `op` selects leg, preprocess or evaluate.
    With `access_point` the function runs in `vpc` and mounts the EFS cache at `mount_path`
    (exported to the runtime as RELAYTRAIN_CACHE_DIR).

    Exposes: `function`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: lambda_.DockerImageCode,
        memory_mb: int,
        timeout_s: int,
        ephemeral_mb: int = 512,
        architecture: str = "x86_64",
        reserved_concurrency: int | None = None,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        security_groups: list[ec2.ISecurityGroup] | None = None,
        access_point: efs.IAccessPoint | None = None,
        mount_path: str = "/mnt/cache",
        environment: dict[str, str] | None = None,
        description: str = "",
    ) -> None:
        super().__init__(scope, id)
        if access_point is not None and vpc is None:
            raise RelayError("StageFunction: an EFS access point needs the vpc it lives in")
        if access_point is not None and not mount_path.startswith("/mnt/"):
            raise RelayError(f"StageFunction: mount_path {mount_path!r} must be under /mnt/ (a Lambda rule)")
        self.log_group = log_group(self, "Logs")
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description or None
        )
        self.log_group.grant_write(self.role)
        env = dict(environment or {})
        if access_point is not None:
            env["RELAYTRAIN_CACHE_DIR"] = mount_path
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=code,
            role=self.role,
            description=description,
            architecture=lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            ephemeral_storage_size=Size.mebibytes(ephemeral_mb),
            reserved_concurrent_executions=reserved_concurrency,
            retry_attempts=0,  # Step Functions owns retries
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            environment=env,
            vpc=vpc,
            vpc_subnets=subnets if vpc is not None else None,
            security_groups=security_groups if vpc is not None else None,
            filesystem=lambda_.FileSystem.from_efs_access_point(access_point, mount_path) if access_point else None,
        )
        nag.ack(self.role, "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions")
        nag.checkov_skip(self.function, "CKV_AWS_116", "invoked synchronously by Step Functions, which retries it and "
                         "records every failure in the execution history; a dead-letter queue serves asynchronous "
                         "invocations only")
        nag.checkov_skip(self.function, "CKV_AWS_173", "its variables hold no secret (leg margin, cache path, "
                         "source prefix); Lambda encrypts them at rest with its AWS-managed key")
        if vpc is None:
            nag.checkov_skip(self.function, "CKV_AWS_117", "reaches only public AWS endpoints (S3, CloudWatch, X-Ray) "
                             "with IAM over TLS; a VPC would add NAT or interface endpoints and protect nothing more")
        if vpc is not None:
            nag.ack(
                self.role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
                "the AWS policy grants only the network-interface actions Lambda needs to join the VPC (EFS cache)",
            )



class LambdaStepTrainer(Construct):
    """Time-boxed training legs on Lambda, looped by a Step Functions Standard state machine.

    Execution input: `{"run": NAME}` (the run's store is `store_root/NAME`); a hop's input also
    carries `legs` (legs so far) and `launch` (the first execution's name). Each leg receives
    `{"op": "leg", "store": URL, "spec": SPEC}` (plus `max_steps` = `leg_max_steps` when set: legs
    bounded by steps as well as by the invocation's time) so the first leg initialises the run. After each
    leg: an error reply or a failure after retries ends the execution (recorded as its error);
    `done` succeeds; accrued `cost_usd` at or over `budget_usd` stops with `BudgetExhausted`;
    after `legs_per_execution` legs the machine starts a fresh execution of itself (continue-as-new,
    before the 25,000-event history cap) and succeeds. Loss, step, tokens and cost are published
    as CloudWatch metrics (namespace `metrics_namespace`, dimension Run) after every leg.

    Pass an existing `function`, or the props of a StageFunction (`code`, `memory_mb`, ...).
    Exposes: `function`, `stage` (the StageFunction or None), `state_machine`, `log_group`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        store_root: str,
        spec: dict,
        function: lambda_.IFunction | None = None,
        function_timeout_s: int = 900,
        budget_usd: float | None = None,
        retries: int = 3,
        legs_per_execution: int | None = None,
        leg_max_steps: int | None = None,
        metrics_namespace: str = "relaytrain",
        state_machine_name: str | None = None,
        **stage_props,
    ) -> None:
        super().__init__(scope, id)
        if (function is None) == (not stage_props):
            raise RelayError(
                "LambdaStepTrainer: pass an existing function or StageFunction props (code, memory_mb, ...), not both"
            )
        if legs_per_execution is None:  # as many as the 25,000-event history holds (relaytrain.plan.sfn)
            legs_per_execution = sfn_accounting.legs_per_execution(retries)
        if legs_per_execution < 1:
            raise RelayError(f"LambdaStepTrainer: legs_per_execution must be >= 1, got {legs_per_execution}")
        self.stage: StageFunction | None = None
        if function is None:
            stage_props.setdefault("reserved_concurrency", 1)  # one leg of a run at a time
            stage_props.setdefault("timeout_s", function_timeout_s)
            function_timeout_s = stage_props["timeout_s"]
            self.stage = StageFunction(
                self, "Stage", description="relaytrain step trainer (one leg per invocation)", **stage_props
            )
            function = self.stage.function
        self.function = function

        name = state_machine_name or Names.unique_resource_name(self, max_length=80, separator="-")
        self_arn = Stack.of(self).format_arn(
            service="states", resource="stateMachine", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        store = f"States.Format('{store_root}/{{}}', $.run)"
        # `launch`: the first execution's name; hops are named LAUNCH-LEGS, so a retried hop is idempotent
        fresh = sfn.Pass(self, "StartRun", parameters={
            "run.$": "$.run", "store.$": store, "launch.$": "$$.Execution.Name", "legs": 0, "execution_legs": 0})
        resumed = sfn.Pass(self, "ResumeRun", parameters={
            "run.$": "$.run", "store.$": store, "launch.$": "$.launch", "legs.$": "$.legs", "execution_legs": 0})
        payload = {"op": "leg", "store.$": "$.store", "spec": spec}
        if leg_max_steps is not None:
            payload["max_steps"] = leg_max_steps
        leg = lambda_task(
            self, "Leg", function, payload,
            retries=retries, timeout_s=function_timeout_s, result_path="$.leg",
        )
        leg.add_catch(
            sfn.Fail(self, "LegFailed", error_path="$.error.Error", cause_path="$.error.Cause"),
            errors=["States.ALL"],
            result_path="$.error",
        )
        refused = sfn.Fail(self, "LegRefused", error="LegError", cause_path="States.JsonToString($.leg.status.error)")
        count = sfn.Pass(
            self,
            "CountLeg",
            parameters={
                "run.$": "$.run",
                "store.$": "$.store",
                "launch.$": "$.launch",
                "legs.$": "States.MathAdd($.legs, 1)",
                "execution_legs.$": "States.MathAdd($.execution_legs, 1)",
                "last.$": "$.leg.status",
            },
        )
        metrics = publish_metrics(self, "PublishMetrics", metrics_namespace)
        hop = tasks.StepFunctionsStartExecution(
            self,
            "ContinueAsNew",
            state_machine=sfn.StateMachine.from_state_machine_arn(self, "Self", self_arn),
            input=sfn.TaskInput.from_object({"run.$": "$.run", "legs.$": "$.legs", "launch.$": "$.launch"}),
            name=sfn.JsonPath.format("{}-{}", sfn.JsonPath.string_at("$.launch"), sfn.JsonPath.string_at("$.legs")),
            associate_with_parent=True,
            result_path=sfn.JsonPath.DISCARD,
        )
        hop.add_retry(errors=["States.ALL"], interval=Duration.seconds(5), max_attempts=retries, backoff_rate=2.0)
        hop.next(sfn.Succeed(self, "HandedOver", comment="the run continues in a new execution"))

        after = (
            sfn.Choice(self, "NextLeg?")
            .when(sfn.Condition.boolean_equals("$.last.done", True), sfn.Succeed(self, "RunDone"))
        )
        if budget_usd is not None:
            after.when(
                sfn.Condition.number_greater_than_equals("$.last.cost_usd", budget_usd),
                sfn.Fail(
                    self,
                    "BudgetExhausted",
                    error="BudgetExhausted",
                    cause=f"accrued cost reached the budget of {budget_usd} USD",
                ),
            )
        after.when(sfn.Condition.number_greater_than_equals("$.execution_legs", legs_per_execution), hop)
        after.otherwise(leg)

        check = (
            sfn.Choice(self, "LegOk?").when(sfn.Condition.is_present("$.leg.status.error"), refused).otherwise(count)
        )
        leg.next(check)
        count.next(metrics)
        metrics.next(after)
        start = sfn.Choice(self, "Resume?").when(sfn.Condition.is_present("$.legs"), resumed).otherwise(fresh)
        fresh.next(leg)
        resumed.next(leg)

        self.log_group, self.state_machine = logged_state_machine(
            self, name, start, [function], state_machine_type=sfn.StateMachineType.STANDARD)



def publish_metrics(scope: Construct, id: str, namespace: str) -> sfn.IChainable:
    """PutMetricData for the last leg (`$.last`); a failure here never stops the run."""
    def datum(name: str, path: str, unit: str) -> dict:
        return {"MetricName": name, "Dimensions": [{"Name": "Run", "Value.$": "$.run"}], "Value.$": path, "Unit": unit}

    task = tasks.CallAwsService(
        scope,
        id,
        service="cloudwatch",
        action="putMetricData",
        parameters={
            "Namespace": namespace,
            "MetricData": [
                datum("Step", "$.last.step", "Count"),
                datum("Tokens", "$.last.tokens", "Count"),
                datum("CostUsd", "$.last.cost_usd", "None"),
                datum("Legs", "$.legs", "Count"),
            ],
        },
        iam_resources=["*"],  # PutMetricData has no resource-level permissions (namespace condition below)
        result_path=sfn.JsonPath.DISCARD,
    )
    loss = tasks.CallAwsService(
        scope,
        f"{id}Loss",
        service="cloudwatch",
        action="putMetricData",
        parameters={"Namespace": namespace, "MetricData": [datum("Loss", "$.last.loss", "None")]},
        iam_resources=["*"],
        result_path=sfn.JsonPath.DISCARD,
    )
    done = sfn.Pass(scope, f"{id}Done")
    has_loss = sfn.Choice(scope, f"{id}HasLoss?").when(sfn.Condition.is_numeric("$.last.loss"), loss).otherwise(done)
    for t in (task, loss):
        t.add_catch(done, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        # PutMetricData has no resource-level form: its `*` grant is held to our namespace instead
        # (`_task_policies` is jsii's name for the task's protected taskPolicies, not yet attached)
        for statement in t._task_policies:
            statement.add_condition("StringEquals", {"cloudwatch:namespace": namespace})
    task.next(has_loss)
    loss.next(done)
    return sfn.Chain.custom(task, [done], task)
