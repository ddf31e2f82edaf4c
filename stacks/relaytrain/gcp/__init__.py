"""Google Cloud with Pulumi: reusable components, the program, review plans, policy rules.

Importing `relaytrain.gcp` imports no Pulumi: `source`, `workflow` and `policy` are pure Python;
`components`, `program`, `mocks` and `review` import pulumi / pulumi_gcp when used.
"""
