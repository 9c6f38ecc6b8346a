"""065 multi init containers: three init containers run one after the other, each adding to a
shared emptyDir (a config file, its validation, a JSON data file written by Python); the main
container then checks that all three ran, in order, and that their outputs are there.

Our version: upstream's third init container uses ``alpine:3.19`` and installs Python with
``apk add python3`` (network egress) before writing the JSON file with it; failures of that
install are silenced, but the main container's "Data file validated" check then fails. We give
that init container an image that already has python3 (the local Python image, in which
``apk`` does not exist and its failure is silenced the same way). Everything checked is
unchanged.
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, mount, pod, shell

TEMPLATE = "065-multi-init-containers.yaml"

CREATE_CONFIG = """\
echo "=== init 1/3: writing the configuration ==="
cat > /shared/config.txt <<'CONF'
app_name=conformance-app
version=2.1.0
environment=testing
debug=false
CONF
echo "created_at=$(date +%s)" >> /shared/config.txt
echo "init_stage=1" >> /shared/stage.txt
echo "Config created successfully"
cat /shared/config.txt
"""

VALIDATE_CONFIG = """\
echo "=== init 2/3: validating the configuration ==="
test -f /shared/config.txt || { echo "ERROR: no /shared/config.txt"; exit 1; }
for key in app_name version environment; do
  grep -q "^$key=" /shared/config.txt || { echo "ERROR: $key missing"; exit 1; }
done
echo "init_stage=2" >> /shared/stage.txt
echo "validation_passed=true" >> /shared/config.txt
echo "Configuration validated successfully"
"""

PREPARE_DATA = """\
echo "=== init 3/3: preparing data ==="
apk add --no-cache python3 > /dev/null 2>&1
python3 - <<'PY'
import json
data = {"users": ["ana", "ben", "chen"], "roles": ["admin", "editor", "viewer"],
        "counts": {"total": 3, "active": 2, "inactive": 1}}
with open("/shared/data.json", "w") as out:
    json.dump(data, out, indent=2)
print("wrote /shared/data.json")
PY
echo "init_stage=3" >> /shared/stage.txt
echo done > /shared/init_complete.flag
echo "All init containers finished successfully"
"""

MAIN = """\
echo "=== main: checking what the init containers left ==="
test -f /shared/init_complete.flag || { echo "ERROR: init containers did not finish"; exit 1; }
stages=$(grep -c '^init_stage=' /shared/stage.txt)
[ "$stages" = 3 ] || { echo "ERROR: $stages init stages instead of 3"; exit 1; }
order=$(cut -d= -f2 /shared/stage.txt | tr -d '\\n')
[ "$order" = 123 ] || { echo "ERROR: init stages ran in the order $order"; exit 1; }
echo "✓ All 3 init stages completed"
grep -q '^validation_passed=true$' /shared/config.txt || { echo "ERROR: not validated"; exit 1; }
echo "✓ Configuration validated"
python3 - <<'PY' || exit 1
import json
with open("/shared/data.json") as f:
    data = json.load(f)
assert len(data["users"]) == 3 and data["counts"]["total"] == 3, data
print("✓ Data file validated")
print(f"  {len(data['users'])} users, {len(data['roles'])} roles")
PY
echo "MULTI_INIT_TEST_PASSED"
"""


def build(s: str) -> Case:
    name = f"multi-init-{s}"
    shared = [mount("shared-data", "/shared")]
    return Case(
        TEMPLATE, "three init containers in sequence, sharing an emptyDir",
        pods=[pod(name, [shell("main-app", "python:3.11-alpine", MAIN, volumeMounts=shared)],
                  init=[shell("create-config", "busybox:1.36", CREATE_CONFIG, volumeMounts=shared),
                        shell("validate-config", "busybox:1.36", VALIDATE_CONFIG,
                              volumeMounts=shared),
                        # Our version: an image with python3 instead of alpine:3.19 + apk add.
                        shell("prepare-data", "python:3.11-alpine", PREPARE_DATA,
                              volumeMounts=shared)],
                  namespace=NS, labels={"app": "multi-init-test", "test-id": s},
                  volumes=[{"name": "shared-data", "emptyDir": {"sizeLimit": "100Mi"}}])],
        pod_checks=[PodCheck(name, "Succeeded")],
        log_checks=[
            LogCheck(name, "Config created successfully", container="create-config"),
            LogCheck(name, "Configuration validated successfully", container="validate-config"),
            LogCheck(name, "All init containers finished successfully", container="prepare-data"),
            LogCheck(name, "✓ All 3 init stages completed", container="main-app"),
            LogCheck(name, "✓ Configuration validated", container="main-app"),
            LogCheck(name, "✓ Data file validated", container="main-app"),
            LogCheck(name, "MULTI_INIT_TEST_PASSED", container="main-app"),
        ],
        timeout_seconds=60)
