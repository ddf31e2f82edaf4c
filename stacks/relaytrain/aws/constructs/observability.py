"""RunObservability: CloudWatch dashboard and alarms for one run topology."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as sns_subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class RunObservability(Construct):
    """Metrics the state machines publish (namespace `namespace`, dimension Run = `run`):
    Loss, Step, Tokens, CostUsd, Legs. Tokens/s is derived on the dashboard (RATE of Tokens).

    Alarms: any failed execution, any function error, and accrued cost at `budget_usd` (and a
    warning at 80 %). Alarm actions go to `topic` (an existing topic, or one created with
    SSE and TLS-only access); each of `emails` (the blueprint's `alerts.email`) is subscribed to it
    (AWS mails each address a confirmation link first).

    Alarm names are `alarm_prefix-KEY` (default prefix: the stack name).
    Exposes: `dashboard`, `alarms` (key -> Alarm), `topic`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        run: str,
        namespace: str = "relaytrain",
        state_machines: list[sfn.IStateMachine] = (),
        functions: list[lambda_.IFunction] = (),
        budget_usd: float | None = None,
        topic: sns.ITopic | None = None,
        emails: list[str] = (),
        dashboard_name: str | None = None,
        alarm_prefix: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        prefix = alarm_prefix or Stack.of(self).stack_name
        self.topic = topic or sns.Topic(
            self, "Alarms", enforce_ssl=True, master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns")
        )
        for address in emails:
            self.topic.add_subscription(sns_subscriptions.EmailSubscription(address))

        def metric(name: str, stat: str = "Maximum") -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"Run": run},
                statistic=stat,
                period=Duration.minutes(5),
            )

        self.alarms: dict[str, cw.Alarm] = {}

        def alarm(key: str, m: cw.IMetric, threshold: float, description: str) -> None:
            a = m.create_alarm(
                self,
                key,
                alarm_name=f"{prefix}-{key}",
                threshold=threshold,
                evaluation_periods=1,
                alarm_description=description,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            a.add_alarm_action(cw_actions.SnsAction(self.topic))
            self.alarms[key] = a

        for i, machine in enumerate(state_machines):
            alarm(f"ExecutionsFailed{i}", machine.metric_failed(statistic="Sum", period=Duration.minutes(5)), 1,
                  "a relaytrain execution failed (a leg or stage failed after its retries, or the budget stopped it)")
        for i, function in enumerate(functions):
            alarm(f"FunctionErrors{i}", function.metric_errors(statistic="Sum", period=Duration.minutes(5)), 1,
                  "a relaytrain worker invocation failed")
        if budget_usd is not None:
            alarm(
                "BudgetWarning",
                metric("CostUsd"),
                round(0.8 * budget_usd, 6),
                f"accrued cost reached 80 % of the budget ({budget_usd} USD)",
            )
            alarm("BudgetReached", metric("CostUsd"), budget_usd, f"accrued cost reached the budget ({budget_usd} USD)")

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Loss", left=[metric("Loss")], width=8),
            cw.GraphWidget(
                title="Tokens/s",
                left=[
                    cw.MathExpression(
                        expression="RATE(tokens)", using_metrics={"tokens": metric("Tokens")}, label="tokens/s"
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(title="Accrued cost (USD)", left=[metric("CostUsd")], width=8),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Step and legs", left=[metric("Step"), metric("Legs")], width=12),
            # alarms by their ARN from the name: the widget needs no attribute of the alarm resources
            cw.AlarmStatusWidget(
                title="Alarms",
                alarms=[
                    cw.Alarm.from_alarm_arn(
                        self,
                        f"{key}Ref",
                        Stack.of(self).format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=f"{prefix}-{key}",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        ),
                    )
                    for key in self.alarms
                ],
                width=12,
            ),
        )
