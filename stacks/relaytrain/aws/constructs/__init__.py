"""Reusable CDK constructs: props in, created resources exposed as attributes, secure defaults.

Each construct accepts either an existing resource or the props to create one, never both.
"""

from relaytrain.aws.constructs.bucket import DatasetBucket
from relaytrain.aws.constructs.gpu_node import GpuTrainingNode
from relaytrain.aws.constructs.hybrid import HybridPipeline
from relaytrain.aws.constructs.network import EfsCache, TrainingNetwork
from relaytrain.aws.constructs.observability import RunObservability
from relaytrain.aws.constructs.step_trainer import LambdaStepTrainer, StageFunction

__all__ = [
    "DatasetBucket",
    "EfsCache",
    "GpuTrainingNode",
    "HybridPipeline",
    "LambdaStepTrainer",
    "RunObservability",
    "StageFunction",
    "TrainingNetwork",
]
