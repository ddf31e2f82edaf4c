"""DatasetBucket: the S3 bucket holding datasets and run batons."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from relaytrain.aws import nag
from relaytrain_runtime import RelayError


class DatasetBucket(Construct):
    """An encrypted, TLS-only, private, versioned bucket with access logs and a checkpoint lifecycle.

    Pass `bucket` to use an existing bucket (nothing is created), or the props to create one.
    Checkpoints pruned by the runtime become noncurrent versions and expire after
    `noncurrent_days`. Grants are scoped to key prefixes (`grant_prefix_read_write`).

    Exposes: `bucket`, `access_log_bucket` (None for an existing bucket).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket: s3.IBucket | None = None,
        noncurrent_days: int | None = None,
        removal_policy: RemovalPolicy | None = None,
    ) -> None:
        super().__init__(scope, id)
        if bucket is not None and (noncurrent_days is not None or removal_policy is not None):
            raise RelayError("DatasetBucket: pass an existing bucket or props to create one, not both")
        self.access_log_bucket: s3.Bucket | None = None
        if bucket is not None:
            self.bucket: s3.IBucket = bucket
            return
        policy = removal_policy or RemovalPolicy.RETAIN
        secure = dict(
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=policy,
        )
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            **{**secure, "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_PREFERRED},
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
        )
        nag.checkov_skip(self.access_log_bucket, "CKV_AWS_18",
                         "the access-log bucket itself: its access logs would be written into itself")
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            **secure,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="s3/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-pruned-checkpoints",
                    noncurrent_version_expiration=Duration.days(noncurrent_days or 7),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )

    def prefix_arn(self, prefix: str) -> str:
        return self.bucket.arn_for_objects(f"{prefix}*")

    def grant_prefix_read(self, grantee: iam.IGrantable, *prefixes: str) -> None:
        self._grant(grantee, ["s3:GetObject"], prefixes)

    def grant_prefix_read_write(self, grantee: iam.IGrantable, *prefixes: str) -> None:
        """Read, conditional write (fencing) and delete (pruning) of objects under the prefixes."""
        self._grant(grantee, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], prefixes)

    def _grant(self, grantee: iam.IGrantable, actions: list[str], prefixes: tuple[str, ...]) -> None:
        principal = grantee.grant_principal
        if self.access_log_bucket is not None and isinstance(principal, Construct):
            for p in prefixes:
                nag.ack(principal, f"AwsSolutions-IAM5[Resource::{nag.arn_ref(self.bucket, f'/{p}*')}]",
                        f"object access limited to the key prefix {p!r} of the dataset bucket")
        principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.prefix_arn(p) for p in prefixes])
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            )
        )
