"""relaytrain: infrastructure-as-code blueprints for training language models on serverless
and GPU clouds.

The kit side (blueprints, planner, CDK and Pulumi code) never imports torch; the training
runtime lives in the separate `relaytrain_runtime` package.
"""

__version__ = "0.1.0"
