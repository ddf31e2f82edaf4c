#!/bin/bash
# relaytrain GPU node boot script (EC2 user data). Installs the runtime from the stack's asset,
# then runs the node entry point as a systemd service that resumes from the baton on every boot.
# Filled in by GpuTrainingNode: __RUNTIME_ASSET__, __SPEC_JSON__, __NODES__, __CHECKPOINT_EVERY__,
# __NODE_OPTIONS__, __BUDGET__, __REGION__, and the node environment (export lines, at the end of the env file).
set -euo pipefail
install -d -m 755 /opt/relaytrain
cat > /opt/relaytrain/spec.json <<'SPEC'
__SPEC_JSON__
SPEC
cat > /opt/relaytrain/env <<'ENV'
RUNTIME_ASSET=__RUNTIME_ASSET__
NODES=__NODES__
CHECKPOINT_EVERY=__CHECKPOINT_EVERY__
NODE_OPTIONS="__NODE_OPTIONS__"
BUDGET=__BUDGET__
AWS_DEFAULT_REGION=__REGION__
__NODE_ENV__
ENV
cat > /opt/relaytrain/imds.sh <<'IMDS'
imds() {  # IMDSv2: a session token, then the path
  local token
  token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
IMDS
cat > /opt/relaytrain/run-node.sh <<'RUN'
#!/bin/bash
# One node of a run: the store URL and the node's rank come from instance tags (IMDSv2).
set -uo pipefail
. /opt/relaytrain/env
. /opt/relaytrain/imds.sh
export AWS_DEFAULT_REGION
STORE=$(imds tags/instance/relaytrain:store)
PY=/opt/relaytrain/venv/bin/python
if [ ! -x "$PY" ]; then
  python3 -m venv /opt/relaytrain/venv || { apt-get update -q && apt-get install -y -q python3-venv && python3 -m venv /opt/relaytrain/venv; } || exit 1
  aws s3 cp "$RUNTIME_ASSET" /opt/relaytrain/runtime.zip
  rm -rf /opt/relaytrain/runtime && mkdir /opt/relaytrain/runtime
  (cd /opt/relaytrain/runtime && python3 -m zipfile -e ../runtime.zip .)
  EXTRAS=s3; [ -z "${RELAYTRAIN_MLFLOW_URI:-}" ] || EXTRAS=s3,tracking  # tracking: live MLflow logging
  /opt/relaytrain/venv/bin/pip install --quiet "/opt/relaytrain/runtime[$EXTRAS]" || { rm -rf /opt/relaytrain/venv; exit 1; }
fi
# Initialise the run (idempotent for the identical spec; refused for a different one).
"$PY" -c 'import sys
from relaytrain_runtime.baton import Baton
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
Baton(open_store(sys.argv[1])).init(RunSpec.from_json(open(sys.argv[2]).read()))' "$STORE" /opt/relaytrain/spec.json || exit 1
# shellcheck disable=SC2206  # NODE_OPTIONS: the instance price to accrue, e.g. --instance-type g5.xlarge --spot
ARGS=(--store "$STORE" --checkpoint-every "$CHECKPOINT_EVERY" $NODE_OPTIONS)
if [ "$NODES" -gt 1 ]; then
  RANK=$(imds tags/instance/relaytrain:rank || imds ami-launch-index)
  MASTER=$(imds tags/instance/relaytrain:master || true)
  if [ -z "$MASTER" ]; then  # nodes started together (hybrid): rank 0 is launch index 0 of this reservation
    MASTER=$(aws ec2 describe-instances --filters "Name=reservation-id,Values=$(imds reservation-id)" \
      --query 'Reservations[].Instances[?AmiLaunchIndex==`0`].PrivateIpAddress' --output text)
  fi
  [ "$RANK" = 0 ] && MASTER=$(imds local-ipv4)
  /opt/relaytrain/venv/bin/torchrun --nnodes "$NODES" --node-rank "$RANK" --nproc-per-node gpu \
    --rdzv-backend c10d --rdzv-endpoint "$MASTER:29400" --rdzv-id relaytrain \
    -m relaytrain_runtime node "${ARGS[@]}"
else  # one process per GPU of the instance (torchrun's "gpu": all of them; a g6.12xlarge or p4d uses every GPU)
  /opt/relaytrain/venv/bin/torchrun --standalone --nproc-per-node gpu -m relaytrain_runtime node "${ARGS[@]}"
fi
rc=$?
[ $rc -eq 0 ] || exit $rc  # systemd restarts the service; the next start resumes from the baton
# Done: answer the orchestrator's task token if one waits (hybrid pipeline), then stop billing.
TOKEN_URL="$STORE/control/gpu-node-task.json"
for _ in $(seq 1 60); do
  if aws s3 cp "$TOKEN_URL" /opt/relaytrain/task.json 2>/dev/null; then
    TOKEN=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' /opt/relaytrain/task.json)
    aws stepfunctions send-task-success --task-token "$TOKEN" --task-output "{\"store\": \"$STORE\", \"done\": true}"
    break
  fi
  [ "$(imds tags/instance/relaytrain:wait-for-token || echo no)" = yes ] || break
  sleep 10
done
shutdown -h now
RUN
chmod 755 /opt/relaytrain/run-node.sh
cat > /opt/relaytrain/watch.py <<'WATCH'
"""Every few minutes: the run's baton as CloudWatch metrics; exit 3 once its cost reaches the budget."""
import json, subprocess, sys
import boto3
store, budget, region = sys.argv[1], sys.argv[2], sys.argv[3]
out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "baton", "--store", store, "--json"],
                     capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(0)  # no commit yet
state = json.loads(out.stdout.strip().splitlines()[-1])
run = store.rstrip("/").rsplit("/", 1)[-1]
data = [{"MetricName": name, "Dimensions": [{"Name": "Run", "Value": run}], "Value": float(state[key])}
        for name, key in (("Step", "step"), ("Tokens", "tokens"), ("CostUsd", "cost_usd"), ("Loss", "loss"))
        if state.get(key) is not None]
boto3.client("cloudwatch", region_name=region).put_metric_data(Namespace="relaytrain", MetricData=data)
sys.exit(3 if budget and not state["done"] and float(state["cost_usd"]) >= float(budget) else 0)
WATCH
cat > /opt/relaytrain/watch.sh <<'WATCH'
#!/bin/bash
# Metrics, and the budget stop: SIGTERM makes the node checkpoint, then the machine stops.
. /opt/relaytrain/env
. /opt/relaytrain/imds.sh
/opt/relaytrain/venv/bin/python /opt/relaytrain/watch.py "$(imds tags/instance/relaytrain:store)" "$BUDGET" "$AWS_DEFAULT_REGION"
if [ $? -eq 3 ]; then
  systemctl stop relaytrain-node.service
  shutdown -h now
fi
WATCH
chmod 755 /opt/relaytrain/watch.sh
cat > /etc/systemd/system/relaytrain-watch.service <<'UNIT'
[Unit]
Description=relaytrain run metrics and budget stop

[Service]
Type=oneshot
ExecStart=/opt/relaytrain/watch.sh
UNIT
cat > /etc/systemd/system/relaytrain-watch.timer <<'UNIT'
[Unit]
Description=relaytrain run metrics and budget stop, every 5 minutes

[Timer]
OnBootSec=5min
OnUnitActiveSec=5min

[Install]
WantedBy=timers.target
UNIT
cat > /etc/systemd/system/relaytrain-node.service <<'UNIT'
[Unit]
Description=relaytrain training node
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/opt/relaytrain/run-node.sh
Restart=on-failure
RestartSec=30
KillSignal=SIGTERM
TimeoutStopSec=110

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now relaytrain-node.service relaytrain-watch.timer
