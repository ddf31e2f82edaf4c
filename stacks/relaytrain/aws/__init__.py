"""AWS: CDK constructs, one stack per blueprint, the CDK app and `synth_templates`.

Importing this package does not import aws_cdk: the light verbs (validate, plan, status) stay fast.
"""
