"""CDK helpers shared by the constructs: the stack's log key, Lambda tasks with service-error retries,
logged state machines."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from relaytrain.aws import nag

LOG_KEY_ID = "LogsKey"  # one per stack, at the stack's root


def log_key(scope: Construct) -> kms.IKey:
    """The stack's KMS key for its CloudWatch log groups (created on first use, rotated yearly).

    CloudWatch Logs of the stack's region may use it only for log groups of this account and region.
    """
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(LOG_KEY_ID)
    if existing is not None:
        return existing
    key = kms.Key(stack, LOG_KEY_ID, description="relaytrain log groups", enable_key_rotation=True,
                  removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
    key.add_to_resource_policy(iam.PolicyStatement(
        principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],  # in a key policy, `*` is this key
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                stack.format_arn(service="logs", resource="log-group", resource_name="*",
                                                 arn_format=ArnFormat.COLON_RESOURCE_NAME)}},
    ))
    return key


def log_group(scope: Construct, id: str, **props) -> logs.LogGroup:
    """A relaytrain log group: encrypted with the stack's log key, kept a month, removed with the stack."""
    return logs.LogGroup(scope, id, encryption_key=log_key(scope), retention=logs.RetentionDays.ONE_MONTH,
                         removal_policy=RemovalPolicy.DESTROY, **props)

# Errors of the Lambda service itself (not of the leg), retried with backoff.
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "States.Timeout",
]


def lambda_task(
    scope: Construct,
    id: str,
    function: lambda_.IFunction,
    payload: dict | sfn.TaskInput,
    *,
    retries: int,
    timeout_s: int,
    result_path: str,
) -> tasks.LambdaInvoke:
    """Invoke a stage: the handler's JSON reply lands at `result_path` + `.status`; service errors retry."""
    task = tasks.LambdaInvoke(
        scope,
        id,
        lambda_function=function,
        payload=payload if isinstance(payload, sfn.TaskInput) else sfn.TaskInput.from_object(payload),
        retry_on_service_exceptions=False,
        result_selector={"status.$": "$.Payload"},
        result_path=result_path,
        task_timeout=sfn.Timeout.duration(Duration.seconds(timeout_s + 60)),
    )
    task.add_retry(
        errors=LAMBDA_SERVICE_ERRORS,
        interval=Duration.seconds(5),
        max_attempts=retries,
        backoff_rate=2.0,
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


def logged_state_machine(scope: Construct, name: str, chain: sfn.IChainable, functions: list[lambda_.IFunction],
                         **props) -> tuple[logs.LogGroup, sfn.StateMachine]:
    """A relaytrain state machine: every event logged (with execution data) to its own log group kept a
    month (encrypted with the stack's log key), X-Ray tracing on, removed with the stack, and its role's
    expected findings acknowledged."""
    logs_ = log_group(scope, "Logs", log_group_name=f"/aws/vendedlogs/states/{name}")
    machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        removal_policy=RemovalPolicy.DESTROY,
        definition_body=sfn.DefinitionBody.from_chainable(chain),
        logs=sfn.LogOptions(destination=logs_, level=sfn.LogLevel.ALL, include_execution_data=True),
        tracing_enabled=True,
        **props,
    )
    ack_state_machine_role(machine, functions)
    return logs_, machine


def ack_state_machine_role(machine: sfn.StateMachine, functions: list[lambda_.IFunction]) -> None:
    """The findings every relaytrain state machine role carries, acknowledged with their reasons."""
    nag.ack(machine, "AwsSolutions-IAM5[Resource::*]",
            "CloudWatch PutMetricData (held to the metric namespace), X-Ray tracing and the log "
            "deliveries of Step Functions logging support no resource-level permissions")
    for function in functions:
        if function.node.default_child is None:  # an imported function: its ARN is literal
            continue
        nag.ack(machine, f"AwsSolutions-IAM5[Resource::{nag.arn_ref(function, ':*')}]",
                "invoke on the stage function's own versions and aliases (CDK's LambdaInvoke grant)")
