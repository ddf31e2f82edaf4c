"""Step Functions accounting of the lambda-steps loop: history events and state transitions per leg.

One home for these numbers: the planner prices and sizes executions with them, and the state machine
(relaytrain.aws.constructs.step_trainer) hands over to a fresh execution after `legs_per_execution`
legs. tests/kit/test_sfn_accounting.py walks the synthesized definition and checks that `LEG_STATES`
is the worst-case path one leg takes through it.

A Standard execution keeps at most 25,000 history events (docs/LIMITS.md). Each state on the path
logs its entered and exited events; a task also logs scheduled, started and succeeded, and every
retry of a task logs scheduled, started and failed (or timed out) again. Every state entered is one
billed state transition, and so is every retry.
"""

from __future__ import annotations

from relaytrain.blueprint.limits import SFN_HISTORY_EVENTS

EVENTS_PER_STATE = {"Task": 5, "Choice": 2, "Pass": 2, "Succeed": 2, "Fail": 2}
EVENTS_PER_RETRY = 3  # scheduled, started, failed
EVENTS_RESERVED = 100  # execution started/succeeded, the first states and the continue-as-new hand-off

# One leg, worst case (the loss metric published too): Leg, LegOk?, CountLeg, PublishMetrics,
# PublishMetricsHasLoss?, PublishMetricsLoss, PublishMetricsDone, NextLeg?
LEG_STATES = ("Task", "Choice", "Pass", "Task", "Choice", "Task", "Pass", "Choice")
RETRIED_TASKS_PER_LEG = 1  # only the Lambda leg retries (the metrics tasks catch their errors)


def events_per_leg(retries: int) -> int:
    """History events one leg adds in the worst case: every state on its path, all `retries` used."""
    return sum(EVENTS_PER_STATE[kind] for kind in LEG_STATES) + EVENTS_PER_RETRY * retries * RETRIED_TASKS_PER_LEG


def transitions_per_leg(retries: int) -> int:
    """Billed state transitions of one leg in the worst case (each state entered, each retry)."""
    return len(LEG_STATES) + retries * RETRIED_TASKS_PER_LEG


def legs_per_execution(retries: int) -> int:
    """Legs one Standard execution holds before its history could pass the 25,000-event cap."""
    return (SFN_HISTORY_EVENTS - EVENTS_RESERVED) // events_per_leg(retries)


def executions(legs: int, retries: int) -> int:
    """Executions (the first plus continue-as-new hand-offs) that `legs` legs take."""
    return max(1, -(-legs // legs_per_execution(retries)))
