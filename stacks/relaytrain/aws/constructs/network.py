"""TrainingNetwork (VPC for workers) and EfsCache (the Lambda dataset-shard cache)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_logs as logs
from constructs import Construct

from relaytrain.aws.constructs.core import log_group
from relaytrain_runtime import RelayError


class TrainingNetwork(Construct):
    """A VPC without NAT gateways: isolated subnets reach S3 through a gateway endpoint.

    `public_subnets=True` adds public subnets for GPU nodes, which download the runtime at boot;
    they get a public address but their security group admits nothing from outside.
    Pass `vpc` to use an existing VPC instead.

    Exposes: `vpc`, `worker_security_group` (admits only itself: NCCL between nodes),
    `isolated_subnets`, `public_subnets`, `flow_log_group` (None for an existing VPC).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc | None = None,
        max_azs: int | None = None,
        public_subnets: bool | None = None,
    ) -> None:
        super().__init__(scope, id)
        if vpc is not None and (max_azs is not None or public_subnets is not None):
            raise RelayError("TrainingNetwork: pass an existing vpc or props to create one, not both")
        self.flow_log_group: logs.LogGroup | None = None
        if vpc is None:
            subnets = [
                ec2.SubnetConfiguration(name="workers", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22)
            ]
            if public_subnets:
                subnets.append(ec2.SubnetConfiguration(name="nodes", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24))
            self.flow_log_group = log_group(self, "FlowLogs")
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=max_azs or 2,
                nat_gateways=0,
                subnet_configuration=subnets,
                gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
                flow_logs={
                    "all": ec2.FlowLogOptions(
                        destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group)
                    )
                },
                restrict_default_security_group=True,
            )
        self.vpc = vpc
        self.isolated_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.public_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        self.worker_security_group = ec2.SecurityGroup(
            self,
            "Workers",
            vpc=vpc,
            description="relaytrain workers: no inbound except from each other",
            allow_all_outbound=True,
        )
        self.worker_security_group.add_ingress_rule(
            self.worker_security_group, ec2.Port.all_tcp(), "workers of one run (torchrun rendezvous and NCCL)"
        )


class EfsCache(Construct):
    """An encrypted EFS file system with one access point, reachable only from the workers.

    Exposes: `file_system`, `access_point`, `security_group`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        workers: ec2.ISecurityGroup,
        subnets: ec2.SubnetSelection | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, id)
        self.security_group = ec2.SecurityGroup(
            self, "Mount", vpc=vpc, description="relaytrain cache: NFS from the workers only", allow_all_outbound=False
        )
        self.security_group.add_ingress_rule(workers, ec2.Port.tcp(2049), "NFS from the workers")
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            vpc_subnets=subnets or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_group=self.security_group,
            encrypted=True,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            enable_automatic_backups=False,  # a cache: the store holds the truth
            removal_policy=removal_policy,
        )
        self.access_point = self.file_system.add_access_point(
            "AccessPoint",
            path="/relaytrain",
            create_acl=efs.Acl(owner_uid="1000", owner_gid="1000", permissions="750"),
            posix_user=efs.PosixUser(uid="1000", gid="1000"),
        )
