"""The Step Functions accounting (relaytrain.plan.sfn) is the state machine's: walk the synthesized
lambda-steps definition from the Leg task back to itself and count what the worst-case path logs."""

import json

import pytest

from relaytrain.plan import sfn as accounting

RETRIES = 3


def resolve_join(value) -> str:
    """The definition string of a template, CloudFormation tokens replaced by a placeholder."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(part if isinstance(part, str) else "TOKEN" for part in parts)
    raise AssertionError(f"unexpected definition string {value!r}")


@pytest.fixture(scope="module")
def definition() -> dict:
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template

    from relaytrain.aws.constructs.step_trainer import LambdaStepTrainer

    app = App(analytics_reporting=False)
    stack = Stack(app, "Accounting")
    function = lambda_.Function.from_function_arn(stack, "Fn", "arn:aws:lambda:us-east-1:123456789012:function:leg")
    trainer = LambdaStepTrainer(stack, "Trainer", store_root="s3://bucket/runs", spec={"steps": 1},
                                function=function, retries=RETRIES, state_machine_name="accounting-legs")
    template = Template.from_stack(stack).to_json()
    [machine] = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert trainer.state_machine is not None
    return json.loads(resolve_join(machine["Properties"]["DefinitionString"]))


def successors(state: dict) -> list[str]:
    """Where a state may go next on a path that keeps training (catches and terminal states end a leg)."""
    if state["Type"] == "Choice":
        return [c["Next"] for c in state["Choices"]] + ([state["Default"]] if "Default" in state else [])
    return [state["Next"]] if "Next" in state else []


def worst_leg_path(states: dict) -> list[str]:
    """The states of the longest (most history events) path from Leg back to Leg."""
    best: list[str] = []

    def events(path: list[str]) -> int:
        return sum(accounting.EVENTS_PER_STATE[states[n]["Type"]] for n in path)

    def walk(name: str, path: list[str]) -> None:
        nonlocal best
        for nxt in successors(states[name]):
            if nxt == "Leg":
                best = path if events(path) > events(best) else best
            elif nxt not in path:
                walk(nxt, path + [nxt])

    walk("Leg", ["Leg"])
    return best


def test_a_leg_passes_through_the_states_the_accounting_counts(definition):
    path = worst_leg_path(definition["States"])
    assert tuple(definition["States"][n]["Type"] for n in path) == accounting.LEG_STATES
    assert accounting.events_per_leg(0) == 25
    assert accounting.transitions_per_leg(0) == len(path)


def test_only_the_leg_task_retries_and_with_the_blueprints_retries(definition):
    states = definition["States"]
    path = worst_leg_path(states)
    retried = [name for name in path if states[name].get("Retry")]
    assert retried == ["Leg"] and len(retried) == accounting.RETRIED_TASKS_PER_LEG
    assert max(r["MaxAttempts"] for r in states["Leg"]["Retry"]) == RETRIES
    assert accounting.events_per_leg(RETRIES) == 25 + 3 * RETRIES


def test_the_state_machine_hands_over_after_the_legs_one_history_holds(definition):
    states = definition["States"]
    [threshold] = [c["NumericGreaterThanEquals"] for c in states["NextLeg?"]["Choices"]
                   if c.get("Variable") == "$.execution_legs"]
    assert threshold == accounting.legs_per_execution(RETRIES) == (25_000 - accounting.EVENTS_RESERVED) // 34
    assert threshold * accounting.events_per_leg(RETRIES) + accounting.EVENTS_RESERVED <= 25_000
