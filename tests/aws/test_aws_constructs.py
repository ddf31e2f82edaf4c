"""Fine-grained assertions on the synthesized templates, construct by construct (aws_cdk.assertions)."""

import json

import pytest
from aws_cdk.assertions import Capture, Match, Template

from tests.fixtures.cdk import stack_template_of


@pytest.fixture(scope="module")
def t(aws_templates):
    return lambda name: Template.from_json(stack_template_of(aws_templates, name))


def definition(template: Template) -> dict:
    """The state machine definition with CloudFormation tokens replaced by their logical ids."""
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(
        p if isinstance(p, str) else "<" + (p.get("Ref") or ".".join(p.get("Fn::GetAtt", ["?"]))) + ">" for p in parts
    )
    return json.loads(text)


def statements(template: Template) -> list[dict]:
    out = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


# -- dataset bucket -------------------------------------------------------------------------
def test_dataset_bucket_is_private_encrypted_versioned_logged(t):
    template = t("test-steps")
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "s3/"},
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Id": "expire-pruned-checkpoints",
                                "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                                "Status": "Enabled",
                            }
                        )
                    ]
                )
            },
        },
    )
    # TLS only, on both buckets
    tls = {"Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny"}
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert any(
            Match.object_like(tls) and {k: s.get(k) for k in tls} == tls
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_existing_bucket_is_used_not_created():
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from relaytrain.aws.constructs import DatasetBucket
    from relaytrain_runtime import RelayError

    stack = Stack(App(), "S")
    existing = s3.Bucket.from_bucket_name(stack, "Existing", "my-data")
    data = DatasetBucket(stack, "Data", bucket=existing)
    assert data.bucket is existing and data.access_log_bucket is None
    assert Template.from_stack(stack).find_resources("AWS::S3::Bucket") == {}
    with pytest.raises(RelayError, match="not both"):
        DatasetBucket(stack, "Both", bucket=existing, noncurrent_days=3)


# -- IAM ------------------------------------------------------------------------------------
def test_no_wildcard_actions_and_s3_scoped_to_prefixes(aws_templates):
    for name, raw in aws_templates.items():
        for st in statements(Template.from_json(raw)):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not any("*" in a for a in actions), (name, st)
            if any(a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject") for a in actions):
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                for r in resources:
                    tail = r["Fn::Join"][1][-1] if isinstance(r, dict) else r
                    assert tail.endswith(("/runs/*", "/data/*", "/raw/*")) or ".zip" in json.dumps(r), (name, r)
            if "s3:ListBucket" in actions:
                assert "s3:prefix" in json.dumps(st.get("Condition", {})), (name, st)


# -- Lambda step trainer --------------------------------------------------------------------
def test_step_trainer_function_from_runtime_image(t, aws_blueprints):
    lam = aws_blueprints["test-steps"].lambda_
    t("test-steps").has_resource_properties("AWS::Lambda::Function", {
        "PackageType": "Image",
        "Architectures": ["x86_64"],
        "ImageConfig": {"Command": ["relaytrain_runtime.handlers.aws_lambda.handler"]},
        "MemorySize": lam.memory_mb,
        "Timeout": lam.timeout_s,
        "EphemeralStorage": {"Size": lam.ephemeral_mb},
        "ReservedConcurrentExecutions": 1,
        "TracingConfig": {"Mode": "Active"},
        "Environment": {"Variables": {"RELAYTRAIN_MARGIN_S": str(lam.leg_margin_s)}},
    })


def test_cached_trainer_mounts_encrypted_efs_in_isolated_vpc(t):
    template = t("test-steps-cached")
    template.has_resource_properties("AWS::Lambda::Function", {
        "FileSystemConfigs": [{"Arn": Match.any_value(), "LocalMountPath": "/mnt/cache"}],
        "VpcConfig": {"SubnetIds": Match.any_value(), "SecurityGroupIds": Match.any_value()},
        # cache.max_gb: 2 -> the runtime's budget (EFS reports exabytes free: without it the cache only grows)
        "Environment": {"Variables": Match.object_like({"RELAYTRAIN_CACHE_DIR": "/mnt/cache",
                                                        "RELAYTRAIN_CACHE_BUDGET_MB": "2048"})},
    })
    template.has_resource_properties("AWS::EFS::FileSystem", {"Encrypted": True, "ThroughputMode": "elastic"})
    template.has_resource_properties("AWS::EFS::AccessPoint", {"PosixUser": {"Uid": "1000", "Gid": "1000"}})
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )
    template.resource_count_is("AWS::EC2::FlowLog", 1)
    # NFS admitted only from the workers' security group
    source = Capture()
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "tcp",
            "FromPort": 2049,
            "ToPort": 2049,
            "SourceSecurityGroupId": {"Fn::GetAtt": [source, "GroupId"]},
        },
    )
    assert source.as_string().startswith("NetworkWorkers")
    for sg in template.find_resources("AWS::EC2::SecurityGroup").values():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule, rule


def test_state_machine_loops_legs_with_retries_catch_budget_and_hop(t, aws_blueprints):
    template = t("test-steps-cached")
    template.has_resource_properties("AWS::StepFunctions::StateMachine", {
        "StateMachineType": "STANDARD",
        "StateMachineName": "relaytrain-test-steps-cached-legs",
        "LoggingConfiguration": {"Level": "ALL", "IncludeExecutionData": True, "Destinations": Match.any_value()},
        "TracingConfiguration": {"Enabled": True},
    })
    states = definition(template)["States"]
    leg = states["Leg"]
    assert leg["Resource"].endswith(":states:::lambda:invoke")
    assert leg["Parameters"]["Payload"]["op"] == "leg" and leg["Parameters"]["Payload"]["spec"]["preset"] == "tiny-gpt"
    (retry,) = leg["Retry"]
    assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "States.Timeout"} <= set(retry["ErrorEquals"])
    assert (
        retry["MaxAttempts"] == aws_blueprints["test-steps-cached"].lambda_.retries == 5 and retry["BackoffRate"] == 2
    )
    assert leg["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "LegFailed"}]
    assert states["LegFailed"]["Type"] == "Fail"
    choices = states["NextLeg?"]["Choices"]
    assert {"Variable": "$.last.done", "BooleanEquals": True, "Next": "RunDone"} in choices
    assert {"Variable": "$.last.cost_usd", "NumericGreaterThanEquals": 2.5, "Next": "BudgetExhausted"} in choices
    # hand over after the legs one 25,000-event history holds at 5 retries: (25,000 - 100) // (25 + 3 x 5)
    # (relaytrain.plan.sfn.legs_per_execution)
    assert {"Variable": "$.execution_legs", "NumericGreaterThanEquals": 622, "Next": "ContinueAsNew"} in choices
    hop = states["ContinueAsNew"]
    assert hop["Resource"].endswith(":states:::states:startExecution")
    assert hop["Parameters"]["StateMachineArn"].endswith(":stateMachine:relaytrain-test-steps-cached-legs")


# -- GPU node -------------------------------------------------------------------------------
def test_gpu_nodes_from_hardened_launch_template(t):
    template = t("test-gpu")
    template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {
                    "InstanceType": "g5.xlarge",
                    "ImageId": "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
                    "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
                    "MetadataOptions": {
                        "HttpTokens": "required",
                        "HttpPutResponseHopLimit": 1,
                        "InstanceMetadataTags": "enabled",
                    },
                    "BlockDeviceMappings": [
                        {
                            "DeviceName": "/dev/sda1",
                            "Ebs": {
                                "Encrypted": True,
                                "VolumeType": "gp3",
                                "VolumeSize": 100,
                                "DeleteOnTermination": True,
                            },
                        }
                    ],
                    "InstanceMarketOptions": {
                        "MarketType": "spot",
                        "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
                    },
                    "InstanceInitiatedShutdownBehavior": "stop",
                    "Monitoring": {"Enabled": True},
                }
            )
        },
    )
    template.has_resource_properties("AWS::EC2::PlacementGroup", {"Strategy": "cluster"})
    nodes = template.find_resources("AWS::EC2::Instance")
    assert len(nodes) == 2
    tags = {k: {t["Key"]: t["Value"] for t in v["Properties"]["Tags"]} for k, v in nodes.items()}
    ranks = sorted(tag["relaytrain:rank"] for tag in tags.values())
    assert ranks == ["0", "1"]
    rank0 = next(k for k, tag in tags.items() if tag["relaytrain:rank"] == "0")
    rank1 = next(tag for tag in tags.values() if tag["relaytrain:rank"] == "1")
    assert rank1["relaytrain:master"] == {"Fn::GetAtt": [rank0, "PrivateIp"]}
    user_data = json.dumps(template.find_resources("AWS::EC2::LaunchTemplate"))
    for needle in (
        "torchrun",
        "-m relaytrain_runtime node",
        "--checkpoint-every",
        "CHECKPOINT_EVERY=300",
        "shutdown -h now",
        'NODE_OPTIONS=\\"--instance-type g5.xlarge --spot\\"',
        "systemctl enable --now relaytrain-node.service relaytrain-watch.timer",
    ):
        assert needle in user_data, needle


def test_default_gpu_node_is_p3_on_demand_with_metrics_and_budget_stop(t, aws_blueprints):
    template = t("bert-large-ec2-gpu")
    budget = aws_blueprints["bert-large-ec2-gpu"].budget_usd
    user_data = json.dumps(template.find_resources("AWS::EC2::LaunchTemplate"))
    assert f"BUDGET={float(budget)!r}" in user_data and 'NODE_OPTIONS=\\"--instance-type p3.2xlarge\\"' in user_data
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"AlarmName": "relaytrain-bert-large-ec2-gpu-BudgetReached", "Threshold": budget}
    )
    metrics = [s for s in statements(template) if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "relaytrain"}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]
    data = next(iter(template.find_resources("AWS::EC2::LaunchTemplate").values()))["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "p3.2xlarge" and "InstanceMarketOptions" not in data
    template.resource_count_is("AWS::EC2::Instance", 1)
    template.resource_count_is("AWS::EC2::PlacementGroup", 0)


# -- hybrid ---------------------------------------------------------------------------------
def test_a_pretrained_tokenizer_is_read_from_the_runs_stored_base(tmp_path):
    """dataset.tokenizer: pretrained -> the plan event names the run's store (never a model path), the preprocess
    function is confined to the runs prefix (RELAYTRAIN_RUN_PREFIX) and may read objects under it."""
    from relaytrain.aws.synth import synth_templates
    from relaytrain.blueprint import loads
    from relaytrain_runtime.store.confine import RUN_PREFIX_ENV

    bp = loads("name: test-pretok\ncloud: aws\ntopology: hybrid\ngpu: {}\npreprocess: {}\nevaluate: {}\n"
               "training: {preset: tiny-llama, init_from: 's3://corp/models/tiny', steps: 2}\n"
               "dataset: {tokenizer: pretrained}\n", "bp.yaml")
    (path,) = synth_templates([bp], tmp_path)
    template = Template.from_json(json.loads(path.read_text()))
    plan = definition(template)["States"]["PlanPreprocess"]["Parameters"]["Payload"]
    assert plan["tokenizer"] == "pretrained" and plan["run_store.$"] == "$.store"
    assert not any("init_from" in k or "corp/models" in json.dumps(v) for k, v in plan.items())
    functions = template.find_resources("AWS::Lambda::Function").values()
    env = [f["Properties"]["Environment"]["Variables"] for f in functions if "Environment" in f["Properties"]]
    (prefix,) = [e[RUN_PREFIX_ENV] for e in env if RUN_PREFIX_ENV in e]
    assert prefix["Fn::Join"][1][0] == "s3://" and prefix["Fn::Join"][1][2] == "/runs/"  # s3://BUCKET/runs/
    reads = [s for s in statements(template) if s["Action"] == "s3:GetObject" and "/runs/*" in json.dumps(s)]
    assert reads, "the preprocess role cannot read the run's stored base"


def test_hybrid_pipeline_fans_out_trains_on_gpu_and_evaluates(t, aws_blueprints):
    from relaytrain.worker import preparation

    states = definition(t("test-hybrid"))["States"]
    plan = states["PlanPreprocess"]["Parameters"]["Payload"]
    assert plan["op"] == "preprocess" and plan["phase"] == "plan"
    assert plan["source"].endswith("/raw/") and plan["store"].endswith("/data/test-hybrid")
    # the blueprint's dataset: settings, through the one translation (relaytrain.worker.preparation)
    assert {k: v for k, v in plan.items() if k not in ("op", "phase", "source", "store")} == preparation(
        aws_blueprints["test-hybrid"]) == {"tokenizer": "bpe", "vocab_size": 2048, "val_fraction": 0.05}
    pre = states["Preprocess"]
    assert pre["Type"] == "Map" and pre["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert pre["ItemsPath"] == "$.plan.status.items" and pre["MaxConcurrency"] == 16
    assert pre["ItemProcessor"]["States"]["PreprocessObject"]["Parameters"]["Payload.$"] == "$.event"
    assert states["WriteManifest"]["Parameters"]["Payload"] == {
        "op": "preprocess",
        "phase": "manifest",
        "store": plan["store"],
    }
    assert states["StartGpuNodes"]["Resource"].endswith(":states:::aws-sdk:ec2:runInstances")
    wait = states["TrainOnGpu"]
    assert wait["Resource"].endswith(":states:::aws-sdk:s3:putObject.waitForTaskToken")
    assert wait["Parameters"]["Body"]["token.$"] == "$$.Task.Token"
    assert states["StopGpuNodes"]["Resource"].endswith(":states:::aws-sdk:ec2:terminateInstances")
    assert states["Evaluate"]["Parameters"]["Payload"] == {"op": "evaluate", "store.$": "$.store"}
    # the nodes answer the token of this state machine and nothing else
    node_statements = [s for s in statements(t("test-hybrid")) if "states:SendTaskSuccess" in s["Action"]]
    assert len(node_statements) == 1 and ":stateMachine:relaytrain-test-hybrid-pipeline" in json.dumps(
        node_statements[0]["Resource"]
    )


# -- observability --------------------------------------------------------------------------
def test_dashboard_and_alarms(t):
    template = t("test-steps-cached")
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "relaytrain-test-steps-cached-BudgetReached", "MetricName": "CostUsd", "Namespace": "relaytrain",
        "Threshold": 2.5, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Dimensions": [{"Name": "Run", "Value": "test-steps-cached"}]})
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "ExecutionsFailed", "Namespace": "AWS/States", "Threshold": 1}
    )
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "Errors", "Namespace": "AWS/Lambda"})
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    # alerts.email: each address subscribed to the alarms topic; none where the blueprint names none
    topic = Capture()
    for address in ("ops@example.com", "oncall@example.org"):
        template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": address,
                                                                     "TopicArn": {"Ref": topic}})
    assert list(template.find_resources("AWS::SNS::Topic")) == [topic.as_string()]
    assert t("test-steps").find_resources("AWS::SNS::Subscription") == {}
    # without a budget, no budget alarm
    assert not [
        a
        for a in t("test-steps").find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "CostUsd"
    ]


# -- cdk-nag --------------------------------------------------------------------------------
def test_cdk_nag_fails_an_unacknowledged_finding():
    """The gate is real: a stack with a non-compliant resource does not synthesize."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_sqs as sqs

    from relaytrain.aws import nag

    app = App()
    nag.register(app)
    sqs.Queue(Stack(app, "Bad"), "Queue")  # no DLQ, no TLS-only policy: AwsSolutions-SQS3, SQS4
    with pytest.raises(Exception, match="AwsSolutions-SQS"):
        app.synth()


# -- bad input ------------------------------------------------------------------------------
def test_bad_props_and_blueprints_are_refused_with_one_clear_line():
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    from relaytrain.aws.constructs import LambdaStepTrainer, StageFunction, TrainingNetwork
    from relaytrain.aws.stack import RelaytrainStack
    from relaytrain.blueprint.schema import Blueprint
    from relaytrain_runtime import RelayError

    stack = Stack(App(), "S")
    network = TrainingNetwork(stack, "Net")
    from relaytrain.aws.constructs import EfsCache

    cache = EfsCache(stack, "Cache", vpc=network.vpc, workers=network.worker_security_group)
    code = lambda_.DockerImageCode.from_image_asset("runtime")
    with pytest.raises(RelayError, match=r"mount_path '/cache' must be under /mnt/"):
        StageFunction(stack, "F", code=code, memory_mb=1024, timeout_s=60, vpc=network.vpc,
                      access_point=cache.access_point, mount_path="/cache")
    with pytest.raises(RelayError, match="not both"):
        LambdaStepTrainer(stack, "T", store_root="s3://b/runs", spec={})
    with pytest.raises(RelayError, match="legs_per_execution must be >= 1"):
        LambdaStepTrainer(
            stack,
            "T2",
            store_root="s3://b/runs",
            spec={},
            code=code,
            memory_mb=1024,
            timeout_s=60,
            legs_per_execution=0,
        )
    shards = Blueprint.model_validate({"name": "x", "cloud": "aws", "topology": "function-shards"})
    with pytest.raises(RelayError, match="function-shards runs on GCP only"):
        RelaytrainStack(App(), shards)


def test_gpu_node_user_data_exports_the_tracking_uri(t):
    """tracking.mlflow reaches the node's environment (relaytrain.worker.node_environment), so it logs live."""
    user_data = json.dumps(t("test-gpu").find_resources("AWS::EC2::LaunchTemplate"))
    assert "export RELAYTRAIN_MLFLOW_URI=https://mlflow.example.com" in user_data
    assert "RELAYTRAIN_MLFLOW_URI" not in json.dumps(t("test-steps").to_json())
