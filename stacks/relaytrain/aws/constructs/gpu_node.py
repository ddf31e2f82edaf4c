"""GpuTrainingNode: EC2 GPU node(s) from a launch template, running the runtime's node entry point."""

from __future__ import annotations

import json
import pathlib
import shlex

from aws_cdk import Fn, Names, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from relaytrain.aws import nag
from relaytrain_runtime import RelayError

DEFAULT_INSTANCE_TYPE = "p3.2xlarge"
# AWS Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04), resolved by EC2 at each launch.
DLAMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
BOOT_SCRIPT = pathlib.Path(__file__).with_name("node_boot.sh")


class GpuTrainingNode(Construct):
    """One or more GPU instances forming one training job, from one launch template.

    The launch template: a Deep Learning AMI from its public SSM parameter (or `image_parameter`,
    resolved at each launch),
    an encrypted gp3 root volume, IMDSv2 required with instance tags in metadata, detailed
    monitoring, optional spot (a persistent request that stops on interruption, so the node
    resumes from the baton when capacity returns), and user data that installs the runtime from
    `runtime_asset` and runs `relaytrain-runtime node` as a systemd service. Each node reads its
    store URL (tag `relaytrain:store`) and rank from instance tags; several nodes form one torchrun
    job with its rendezvous on node 0 inside a cluster placement group. `node_options` go to the
    node entry point (the stack passes the instance price to accrue); `environment` is exported to its
    process (the stack passes `relaytrain.worker.node_environment`: live MLflow logging). Every 5 minutes a timer
    publishes the baton (Step, Tokens, CostUsd, Loss; namespace `metrics_namespace`, dimension Run)
    and, once the accrued cost reaches `budget_usd`, stops the node (SIGTERM: it checkpoints) and
    the machine. When the run is done the node answers a waiting task token (hybrid pipeline) and
    shuts itself down (instances stop).

    `launch=True` creates the instances with the stack (tag `relaytrain:store` = `store`);
    `launch=False` creates only the template for an orchestrator to run (it sets the tags).
    Pass an existing `role` or let the construct create one; grant it store access outside.

    Exposes: `launch_template`, `role`, `instances` (empty when launch=False), `placement_group`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        runtime_asset: s3_assets.Asset,
        spec: dict,
        store: str = "",
        launch: bool = True,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        nodes: int = 1,
        spot: bool = False,
        root_volume_gb: int = 200,
        checkpoint_every_s: int = 600,
        image_parameter: str = DLAMI_PARAMETER,
        node_options: str = "",
        environment: dict[str, str] | None = None,
        budget_usd: float | None = None,
        metrics_namespace: str = "relaytrain",
        role: iam.IRole | None = None,
        subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        if nodes < 1:
            raise RelayError(f"GpuTrainingNode: nodes must be >= 1, got {nodes}")
        if launch and not store:
            raise RelayError("GpuTrainingNode: launch=True needs the run's store URL")
        self.role = role or iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="relaytrain GPU node",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[
                    Stack.of(self).format_arn(
                        service="s3",
                        region="",
                        account="",
                        resource=runtime_asset.s3_bucket_name,
                        resource_name=runtime_asset.s3_object_key,
                    )
                ],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": metrics_namespace}})
        )
        nag.ack(self.role, "AwsSolutions-IAM5[Resource::*]",
                "cloudwatch:PutMetricData has no resource-level permissions (limited to the relaytrain namespace); "
                "ec2:DescribeInstances (hybrid rendezvous) has none either")
        if role is None:
            nag.ack(
                self.role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
                "Session Manager access to the nodes instead of SSH: no inbound port is opened",
            )
        self.placement_group: ec2.PlacementGroup | None = None
        placement_ref = None
        if nodes > 1:
            # named, and referenced by name: the template stays valid where GetAtt on it is unsupported
            name = Names.unique_resource_name(self, max_length=255, separator="-")
            self.placement_group = ec2.PlacementGroup(
                self, "Placement", placement_group_name=name, strategy=ec2.PlacementGroupStrategy.CLUSTER
            )
            placement_ref = ec2.PlacementGroup.from_placement_group_name(self, "PlacementRef", name)
        script = (
            BOOT_SCRIPT.read_text()
            .replace("__SPEC_JSON__", json.dumps(spec, sort_keys=True))
            .replace("__RUNTIME_ASSET__", runtime_asset.s3_object_url)
            .replace("__NODES__", str(nodes))
            .replace("__CHECKPOINT_EVERY__", str(checkpoint_every_s))
            .replace("__NODE_OPTIONS__", node_options)
            .replace("__BUDGET__", "" if budget_usd is None else repr(float(budget_usd)))
            .replace("__REGION__", Stack.of(self).region)
            .replace("__NODE_ENV__", "\n".join(f"export {k}={shlex.quote(v)}"
                                                for k, v in sorted((environment or {}).items())))
        )
        user_data = ec2.UserData.custom(script)
        self.launch_template = ec2.LaunchTemplate(
            self,
            "Template",
            instance_type=ec2.InstanceType(instance_type),
            # resolved by EC2 at each launch: a node started later (hybrid, spot restart) gets the current AMI
            machine_image=ec2.MachineImage.resolve_ssm_parameter_at_launch(
                image_parameter, os=ec2.OperatingSystemType.LINUX
            ),
            role=self.role,
            security_group=security_group,
            user_data=user_data,
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            instance_metadata_tags=True,
            detailed_monitoring=True,
            ebs_optimized=True,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.STOP,
            placement_group=placement_ref,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/sda1",
                    volume=ec2.BlockDeviceVolume.ebs(
                        root_volume_gb,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
            spot_options=ec2.LaunchTemplateSpotOptions(
                request_type=ec2.SpotRequestType.PERSISTENT,
                interruption_behavior=ec2.SpotInstanceInterruption.STOP,
            )
            if spot
            else None,
        )
        if self.placement_group is not None:
            self.launch_template.node.add_dependency(self.placement_group)
        self.instances: list[ec2.CfnInstance] = []
        if not launch:
            return
        subnet_ids = vpc.select_subnets(**_selection(subnets)).subnet_ids
        first_ip = None
        for rank in range(nodes):
            instance = ec2.CfnInstance(
                self,
                f"Node{rank}",
                launch_template=ec2.CfnInstance.LaunchTemplateSpecificationProperty(
                    launch_template_id=self.launch_template.launch_template_id,
                    version=self.launch_template.latest_version_number,
                ),
                image_id=f"{{{{resolve:ssm:{image_parameter}}}}}",  # the same AMI parameter, resolved at deploy
                subnet_id=Fn.select(0, subnet_ids),  # one AZ: a cluster placement group lives in one
                monitoring=True,
            )
            nag.ack(
                instance,
                "AwsSolutions-EC29",
                "nodes are disposable: the run lives in the store and a replaced node resumes from the baton",
            )
            Tags.of(instance).add("relaytrain:store", store)
            Tags.of(instance).add("relaytrain:rank", str(rank))
            if first_ip is not None:
                Tags.of(instance).add("relaytrain:master", first_ip)
            else:
                first_ip = instance.attr_private_ip
            self.instances.append(instance)


def _selection(subnets: ec2.SubnetSelection | None) -> dict:
    if subnets is None:
        return {"subnet_type": ec2.SubnetType.PUBLIC}
    return {
        k: v
        for k, v in {"subnet_type": subnets.subnet_type, "subnet_group_name": subnets.subnet_group_name}.items()
        if v
    }
