#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests offline, the way a cluster would
judge them, plus the rules we hold our deployment to.

1. Every object against the Kubernetes JSON schemas for each version in
   VERSIONS (PyPI kubernetes-validate, which bundles them), strictly: an
   unknown field is an error, as `kubectl apply` (strict field validation)
   refuses it.
2. cert-manager and Prometheus Operator objects, which no Kubernetes schema
   covers, against their CRDs' schemas: JSON schemas of the PyPI models
   cloudcoil-models-cert-manager / -prometheus-operator (generated from
   those CRDs), made strict the same way. Any other kind is an error: there
   is nothing to check it against.
3. Our rules (RULES below): non-root, read-only, no privilege escalation,
   no capabilities, seccomp; requests and memory limits; gRPC readiness
   probes on the health port; the metrics port; a PodDisruptionBudget and
   at least two replicas for every Deployment; autoscalers for the gateway
   and identity; Services, policies and volumes that point at something.

usage: kubectl kustomize deploy/kubernetes | python3 deploy/validate.py [--self-test]
  --self-test also breaks the input in known ways, one at a time, and fails
  unless each broken variant is refused (so the checks cannot pass vacuously).
"""

import copy
import json
import sys

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.cert_manager import v1 as cert_manager_v1
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

# The oldest Kubernetes we support (gRPC probes, preStop sleep, PDB
# unhealthyPodEvictionPolicy) and the newest the schemas know.
VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]

CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Certificate"): cert_manager_v1.Certificate,
    ("cert-manager.io/v1", "Issuer"): cert_manager_v1.Issuer,
    ("cert-manager.io/v1", "ClusterIssuer"): cert_manager_v1.ClusterIssuer,
    ("monitoring.coreos.com/v1", "PodMonitor"): monitoring_v1.PodMonitor,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring_v1.ServiceMonitor,
}

HEALTH_PORT = 8081
METRICS_PORT = 9464
# Parts whose load follows the traffic: they scale on CPU.
AUTOSCALED = {"gateway", "identity"}


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def strict(schema):
    """Refuses properties a schema does not name, everywhere in it."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


_custom_validators = {}


def custom_validator(key):
    if key not in _custom_validators:
        schema = strict(CUSTOM_KINDS[key].model_json_schema(by_alias=True))
        _custom_validators[key] = jsonschema.Draft202012Validator(schema)
    return _custom_validators[key]


def schema_errors(obj):
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CUSTOM_KINDS:
        errors = []
        for error in custom_validator(key).iter_errors(obj):
            # The models allow null beside every value (anyOf): name the
            # branch that failed, not the whole anyOf.
            error = jsonschema.exceptions.best_match([error])
            message = error.message if len(error.message) < 200 else error.message[:200] + "…"
            errors.append(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {message}")
        return errors
    errors = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(map(str, e.path)) or "(top)"
            errors.append(f"Kubernetes {version}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"Kubernetes {version}: no schema for {key[0]} {key[1]}")
    return errors


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def rules(objects):
    """Our own rules, over the whole set. Returns (object name, message)s."""
    problems = []
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    deployments = by_kind.get("Deployment", [])
    template_labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments
    }
    config_maps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    secrets |= {c["spec"]["secretName"] for c in by_kind.get("Certificate", [])}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}

    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = name_of(obj)
        context = spec.get("securityContext", {})
        if context.get("runAsNonRoot") is not True:
            problems.append((where, "pod securityContext.runAsNonRoot must be true"))
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append((where, "pod securityContext.seccompProfile.type must be RuntimeDefault"))
        if spec.get("automountServiceAccountToken") is not False:
            problems.append((where, "automountServiceAccountToken must be false (no part calls the API)"))
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            at = f"{where} container {container['name']}"
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append((at, "allowPrivilegeEscalation must be false"))
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append((at, "readOnlyRootFilesystem must be true"))
            if security.get("privileged"):
                problems.append((at, "must not be privileged"))
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                problems.append((at, "capabilities must drop ALL"))
            if security.get("capabilities", {}).get("add"):
                problems.append((at, "must add no capabilities"))
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                if kind not in resources.get("requests", {}):
                    problems.append((at, f"needs a {kind} request"))
            if "memory" not in resources.get("limits", {}):
                problems.append((at, "needs a memory limit"))
            for source in container.get("envFrom", []):
                if "configMapRef" in source and obj["kind"] != "Job":
                    if source["configMapRef"]["name"] not in config_maps:
                        problems.append((at, f"envFrom names no ConfigMap {source['configMapRef']['name']}"))
                if "secretRef" in source and source["secretRef"]["name"] not in secrets:
                    problems.append((at, f"envFrom names no Secret {source['secretRef']['name']}"))
        for volume in spec.get("volumes", []):
            secret = volume.get("secret", {}).get("secretName")
            if secret and obj["kind"] != "Job" and secret not in secrets:
                problems.append((where, f"volume {volume['name']}: no Secret or Certificate makes {secret}"))

    for deployment in deployments:
        where = name_of(deployment)
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        for container in spec["containers"]:
            at = f"{where} container {container['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if ports.get("health") != HEALTH_PORT:
                problems.append((at, f"needs the port `health` ({HEALTH_PORT})"))
            if ports.get("metrics") != METRICS_PORT:
                problems.append((at, f"needs the port `metrics` ({METRICS_PORT})"))
            if container.get("readinessProbe", {}).get("grpc", {}).get("port") != HEALTH_PORT:
                problems.append((at, f"readiness must be a gRPC health probe on {HEALTH_PORT}"))
            if "livenessProbe" not in container:
                problems.append((at, "needs a liveness probe"))
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(
            METRICS_PORT
        ):
            problems.append((where, f"pod template needs prometheus.io/scrape and prometheus.io/port {METRICS_PORT}"))
        if not any(
            selects(p["spec"]["selector"].get("matchLabels"), template_labels[name])
            for p in by_kind.get("PodDisruptionBudget", [])
        ):
            problems.append((where, "no PodDisruptionBudget selects it"))
        if name in hpas:
            if "replicas" in deployment["spec"]:
                problems.append((where, "has replicas although an autoscaler owns the count"))
            if hpas[name]["spec"].get("minReplicas", 1) < 2:
                problems.append((where, "autoscaler minReplicas must be at least 2"))
        elif deployment["spec"].get("replicas", 1) < 2:
            problems.append((where, "needs at least 2 replicas"))
        if name in AUTOSCALED and name not in hpas:
            problems.append((where, "needs a HorizontalPodAutoscaler"))

    for name, hpa in hpas.items():
        if name not in template_labels:
            problems.append((name_of(hpa), f"scales no Deployment {name}"))
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector", {})
        targets = [d for d in deployments if selects(selector, template_labels[d["metadata"]["name"]])]
        if not targets:
            problems.append((name_of(service), "selects no Deployment"))
            continue
        names = {p.get("name") for d in targets for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                problems.append((name_of(service), f"targetPort {port['targetPort']} is no container port"))
            if port.get("targetPort") in ("health", "metrics", HEALTH_PORT, METRICS_PORT) and service["spec"].get(
                "type"
            ) == "LoadBalancer":
                problems.append((name_of(service), "a load balancer must not expose health or metrics"))
    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels")
        if selector and not any(selects(selector, labels) for labels in template_labels.values()):
            problems.append((name_of(policy), "selects no Deployment"))
    for config in config_maps.values():
        if config["data"].get("TENANCY_METRICS_LISTEN") != f"0.0.0.0:{METRICS_PORT}":
            problems.append((name_of(config), f"TENANCY_METRICS_LISTEN must be 0.0.0.0:{METRICS_PORT}"))
    return problems


def check(objects):
    """Every problem, as printable lines."""
    lines = []
    for obj in objects:
        for error in schema_errors(obj):
            lines.append(f"{name_of(obj)}: {error}")
    for where, message in rules(objects):
        lines.append(f"{where}: {message}")
    return lines


def find(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def self_test(objects):
    """Breaks the input in known ways; each must be refused."""
    def typo(objs):
        find(objs, "Deployment", "account")["spec"]["replica"] = 3

    def weak_key(objs):
        find(objs, "Certificate", "identity")["spec"]["privateKey"]["algorithm"] = "DSA"

    def unknown_certificate_field(objs):
        find(objs, "Certificate", "identity")["spec"]["dnsName"] = ["identity.tenancy"]

    def unknown_kind(objs):
        objs.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})

    def writable_root(objs):
        container = find(objs, "Deployment", "identity")["spec"]["template"]["spec"]["containers"][0]
        container["securityContext"]["readOnlyRootFilesystem"] = False

    def init_as_root(objs):
        init = find(objs, "Deployment", "identity")["spec"]["template"]["spec"]["initContainers"][0]
        del init["securityContext"]["capabilities"]

    def http_probe(objs):
        container = find(objs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
        container["readinessProbe"] = {"httpGet": {"port": HEALTH_PORT, "path": "/"}}

    def no_pdb(objs):
        objs.remove(find(objs, "PodDisruptionBudget", "contacts"))

    def no_memory_limit(objs):
        container = find(objs, "Deployment", "support")["spec"]["template"]["spec"]["containers"][0]
        del container["resources"]["limits"]["memory"]

    def replicas_under_autoscaler(objs):
        find(objs, "Deployment", "gateway")["spec"]["replicas"] = 2

    def metrics_on_load_balancer(objs):
        find(objs, "Service", "gateway")["spec"]["ports"].append({"name": "metrics", "port": 9464, "targetPort": "metrics"})

    def bad_pod_monitor(objs):
        objs.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PodMonitor",
                "metadata": {"name": "m"},
                "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "metrics", "pathh": "/metrics"}]},
            }
        )

    breakers = [
        typo, weak_key, unknown_certificate_field, unknown_kind, writable_root, init_as_root,
        http_probe, no_pdb, no_memory_limit, replicas_under_autoscaler, metrics_on_load_balancer,
        bad_pod_monitor,
    ]
    passed = True
    for breaker in breakers:
        broken = copy.deepcopy(objects)
        breaker(broken)
        refused = check(broken)
        if refused:
            print(f"self-test: {breaker.__name__}: refused ({refused[0]})")
        else:
            print(f"self-test: {breaker.__name__}: NOT refused")
            passed = False
    return passed


def main():
    objects = [o for o in yaml.safe_load_all(sys.stdin) if o]
    if not objects:
        print("no objects on standard input")
        return 1
    problems = check(objects)
    for line in problems:
        print(f"ERROR {line}")
    kinds = sorted({o["kind"] for o in objects})
    print(
        f"{len(objects)} objects ({', '.join(kinds)}): "
        f"{'valid' if not problems else f'{len(problems)} problems'} "
        f"(Kubernetes {' and '.join(VERSIONS)}, cert-manager and Prometheus Operator CRDs, our rules)"
    )
    if problems:
        return 1
    if "--self-test" in sys.argv[1:] and not self_test(objects):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
