"""infra/: the compose file and the Kubernetes manifests, checked without a container engine.

There is no Docker engine or cluster here, so nothing is started. Instead: the compose file is
validated against the compose-spec JSON schema (the copy check-jsonschema vendors), every
manifest against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields
fail), and both against the code: every ``DOCKYARD_*`` variable is a real setting with a valid
value, every ``--service`` value is one ``dockyard serve`` accepts, every service has a container,
and every route of every service reaches that service through the gateway and the Ingress.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.core.config import ENV_ALIASES, Config, ConfigError
from services.server import SERVICES, build_app, plan

INFRA = Path(__file__).resolve().parents[2] / "infra"
K8S = INFRA / "k8s"
COMPOSE = INFRA / "compose.yaml"
GATEWAY = INFRA / "gateway" / "nginx.conf"
DOCKERFILE = INFRA / "Dockerfile"
PORT = 5050
METRICS_PORT = 9102  # the metrics listener: readiness and /metrics for probes and Prometheus
# Every process answers these about itself; the gateway need not route them anywhere special.
PER_PROCESS_ROUTES = {"/metrics", "/api/v1/health", "/api/v1/health/live"}
# The registry posts notifications to the ingest service directly; they are not exposed.
INTERNAL_ROUTES = {"/v2/webhooks/events"}
# Variables the containers read that are not settings: the admin password for `init`/`user add`.
NOT_SETTINGS = {"DOCKYARD_ADMIN_PASSWORD"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            yield name, document


def deployments() -> dict[str, dict[str, Any]]:
    """The Dockyard Deployments by the service their container runs."""
    found = {}
    for _, doc in manifests():
        if doc["kind"] == "Deployment" and doc["metadata"]["labels"].get(
                "app.kubernetes.io/name") == "dockyard":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            found[_service_arg(container["args"])] = doc
    return found


def dockyard_containers() -> dict[str, list[str]]:
    """Compose services that run ``dockyard serve``, with their command."""
    return {name: service["command"] for name, service in compose()["services"].items()
            if service.get("image") == "dockyard:latest" and service["command"][:1] == ["serve"]}


def _service_arg(args: list[str]) -> str:
    return args[args.index("--service") + 1]


def setting_variables() -> set[str]:
    names = set(ENV_ALIASES)
    for section, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            names |= {f"DOCKYARD_{section}_{key}".upper() for key in model.model_fields}
    return names


def check_settings(variables: dict[str, str], where: str) -> None:
    unknown = sorted(set(variables) - setting_variables() - NOT_SETTINGS)
    assert not unknown, f"{where}: {unknown} name no setting of services/core/config.py"
    settings = {k: v for k, v in variables.items() if k not in NOT_SETTINGS}
    try:
        Config.from_mapping({"webhook": {"secret": "s" * 32}}, env=settings)
    except ConfigError as exc:
        pytest.fail(f"{where}: {exc}")


# --- schemas ---------------------------------------------------------------------------------

def test_the_compose_file_follows_the_compose_specification() -> None:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose())]
    assert errors == []


@pytest.mark.parametrize(("name", "document"), list(manifests()),
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_every_manifest_follows_the_kubernetes_schemas(name: str, document: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{name} {document['kind']}/{document['metadata']['name']}: {exc.message}")


def test_kustomization_generates_what_the_manifests_mount() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated: dict[str, set[str]] = {}
    for generator in ("configMapGenerator", "secretGenerator"):
        for entry in kustomization[generator]:
            keys = {item.split("=", 1)[0] for item in entry.get("files", [])}
            generated[entry["name"]] = keys
            for item in entry.get("files", []) + entry.get("envs", []):
                source = K8S / item.split("=", 1)[-1]
                # Secrets come from `dockyard init` at deploy time; configs are committed.
                assert generator == "secretGenerator" or source.is_file(), source
                assert generator == "configMapGenerator" or source.is_relative_to(K8S / "secrets")
    for _, doc in manifests():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for volume in spec.get("volumes", []):
            source = volume.get("secret") or volume.get("configMap")
            if source is None:
                continue
            name = source.get("secretName") or source.get("name")
            assert name in generated, (doc["metadata"]["name"], name)
            for item in source.get("items", []):
                assert item["key"] in generated[name], (doc["metadata"]["name"], item)


# --- the code's settings and services ----------------------------------------------------------

def test_compose_sets_only_real_settings_with_valid_values() -> None:
    for name, service in compose()["services"].items():
        variables = {k: str(v) for k, v in (service.get("environment") or {}).items()
                     if k.startswith("DOCKYARD_")}
        check_settings(variables, f"compose service {name}")


def test_the_kubernetes_config_map_sets_only_real_settings_with_valid_values() -> None:
    lines = (K8S / "dockyard.env").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    check_settings(variables, "k8s/dockyard.env")
    assert variables["DOCKYARD_SERVER_LISTEN"].endswith(f":{PORT}")


def test_the_image_sets_only_real_settings_and_exposes_the_listen_port() -> None:
    text = DOCKERFILE.read_text()
    env_block = re.search(r"^ENV (.+?)(?<!\\)$", text, re.MULTILINE | re.DOTALL)
    assert env_block is not None
    pairs = re.findall(r"(\w+)=(\S+)", env_block[1])
    check_settings({k: v for k, v in pairs if k.startswith("DOCKYARD_")}, "infra/Dockerfile")
    assert dict(pairs)["DOCKYARD_SERVER_LISTEN"] == f"0.0.0.0:{PORT}"
    assert f"EXPOSE {PORT}" in text
    root = INFRA.parent
    for source in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (root / source).exists(), f"Dockerfile copies {source}, which does not exist"


@pytest.mark.parametrize("container", sorted(dockyard_containers()))
def test_each_compose_container_runs_a_service_dockyard_knows(container: str) -> None:
    value = _service_arg(dockyard_containers()[container])
    _skip_unless_registered(value)
    assert plan([value])


@pytest.mark.parametrize("service", sorted(deployments()))
def test_each_deployment_runs_a_service_dockyard_knows(service: str) -> None:
    _skip_unless_registered(service)
    assert plan([service])
    (container,) = deployments()[service]["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [PORT, METRICS_PORT]
    assert container["envFrom"][0] == {"configMapRef": {"name": "dockyard-env"}}
    variables = {e["name"]: e["value"] for e in container.get("env", [])}
    check_settings(variables, f"k8s Deployment {service}")


def test_probes_and_scrapes_go_where_no_credentials_are_needed() -> None:
    """Liveness on the main port probes nothing; readiness and /metrics answer without
    credentials only on the metrics listener (services/operations.py), which only Prometheus
    and the kubelet reach."""
    lines = (K8S / "dockyard.env").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert variables["DOCKYARD_METRICS_LISTEN"].endswith(f":{METRICS_PORT}")
    for service, deployment in deployments().items():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        live, ready = (container[probe]["httpGet"] for probe in ("livenessProbe", "readinessProbe"))
        assert (live["path"], ports[live["port"]]) == ("/api/v1/health/live", PORT), service
        assert (ready["path"], ports[ready["port"]]) == ("/api/v1/health", METRICS_PORT), service
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(METRICS_PORT), service
    (policy,) = [doc for _, doc in manifests() if doc["kind"] == "NetworkPolicy"]
    assert [[p["port"] for p in rule["ports"]] for rule in policy["spec"]["ingress"]] == [
        ["http"], ["metrics"]]
    assert "from" not in policy["spec"]["ingress"][0]
    environment = compose()["x-dockyard"]["environment"]
    assert environment["DOCKYARD_METRICS_LISTEN"].endswith(f":{METRICS_PORT}")
    healthcheck = " ".join(compose()["x-dockyard"]["healthcheck"]["test"])
    assert f"127.0.0.1:{METRICS_PORT}/api/v1/health'" in healthcheck


def test_every_service_has_a_compose_container_and_a_deployment() -> None:
    in_compose = {_service_arg(command) for command in dockyard_containers().values()}
    assert set(SERVICES) <= in_compose
    assert set(SERVICES) <= set(deployments())


def test_compose_dependencies_and_volumes_exist() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for needed in service.get("depends_on") or []:
            assert needed in spec["services"], (name, needed)
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), (name, source)
            else:
                assert source in spec["volumes"], (name, source)


def _skip_unless_registered(value: str) -> None:
    name = value.removesuffix("-api").removesuffix("-consumers")
    if name not in SERVICES:
        pytest.skip(f"service {name!r} is in infra/ but not yet in services.server.SERVICES "
                    "(its issue is being built); this runs once it is registered")


# --- routing -----------------------------------------------------------------------------------

def gateway_routes() -> dict[str, str]:
    """nginx ``location PREFIX { set $upstream SERVICE; … }`` → {prefix: service}."""
    found = re.findall(r"location (\S+) \{ set \$upstream (\w+); proxy_pass http://\$upstream:"
                       rf"{PORT}; \}}", GATEWAY.read_text())
    return dict(found)


def ingress_routes() -> dict[str, str]:
    ingress = next(doc for name, doc in manifests()
                   if name == "ingress.yaml" and doc["kind"] == "Ingress")
    (rule,) = ingress["spec"]["rules"]
    return {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}


def _nginx_owner(routes: dict[str, str], path: str) -> str:
    # nginx prefix locations: the longest matching string prefix wins.
    return routes[max((p for p in routes if path.startswith(p)), key=len)]


def _ingress_owner(routes: dict[str, str], path: str) -> str:
    # pathType Prefix matches whole path elements (networking.k8s.io/v1 Ingress docs).
    def matches(prefix: str) -> bool:
        return prefix in {"/", path} or path.startswith(prefix.rstrip("/") + "/")

    return routes[max((p for p in routes if matches(p)), key=len)]


def service_routes(service: str) -> set[str]:
    app = build_app(Config.from_mapping({"webhook": {"secret": "s" * 32}}, env={}),
                    [f"{service}-api"])
    return {route.resource.canonical for route in app.router.routes()
            if route.resource is not None} - PER_PROCESS_ROUTES


def test_the_gateway_and_the_ingress_route_the_same_prefixes() -> None:
    assert gateway_routes() == ingress_routes()
    assert gateway_routes()["/"] == "portal"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_route_reaches_its_service_through_gateway_and_ingress(service: str) -> None:
    gateway, ingress = gateway_routes(), ingress_routes()
    routes = service_routes(service)
    assert routes
    for path in sorted(routes - INTERNAL_ROUTES):
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        assert _nginx_owner(gateway, concrete) == service, (
            f"{path} of {service}: add a location to infra/gateway/nginx.conf")
        assert _ingress_owner(ingress, concrete) == service, (
            f"{path} of {service}: add a path to infra/k8s/ingress.yaml")
    for path in routes & INTERNAL_ROUTES:
        assert _nginx_owner(gateway, path) != service
        assert _ingress_owner(ingress, path) != service
