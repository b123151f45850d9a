"""What the rendered Kubernetes manifests must hold (deploy/README.md).

Run: python3 -m unittest discover -s deploy/tests   (needs kubectl with kustomize
and PyYAML; .ci/run installs both). Each overlay is rendered with
`kubectl kustomize`; the checks then run on the objects. The last test case
breaks a rendered copy in each way the checks look for and proves each check
notices.
"""

import copy
import pathlib
import subprocess
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERLAYS = ["dev", "prod"]
IMAGE = "ghcr.io/roaming-mesh/roaming"
# Third-party images the overlays may run besides the project's own.
OTHER_IMAGES = {"otel/opentelemetry-collector-contrib"}
MESH = {
    # name: (gRPC port, readiness service name)
    "gateway": (50050, ""),
    "reservation": (50051, "roaming.reservation.v1.ReservationService"),
    "payment": (50052, "roaming.payment.v1.PaymentService"),
    "rental": (50053, "roaming.rental.v1.RentalService"),
    "parking": (50054, "roaming.parking.v1.ParkingService"),
    "view": (50055, "roaming.view.v1.ViewService"),
}
LIVENESS = "roaming.liveness"


def render(overlay):
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def roaming_config(objs):
    """The shared settings: generated, so its name carries a hash of its
    content and a change rolls the pods."""
    return next(o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("roaming-config-"))


def drain_seconds(objs):
    data = roaming_config(objs)["data"]
    return (int(data["ROAMING_SHUTDOWN_DELAY_MS"]) + int(data["ROAMING_SHUTDOWN_GRACE_MS"])) / 1000


def problems(objs, overlay):
    """Every way `objs` (one rendered overlay) falls short, as sentences."""
    found = []
    deployments = {o["metadata"]["name"]: o for o in of_kind(objs, "Deployment")}
    for name in MESH:
        if name not in deployments:
            found.append(f"no Deployment {name}")
    drain = drain_seconds(objs)
    for name, d in deployments.items():
        spec = d["spec"]
        pod = spec["template"]["spec"]
        where = f"Deployment {name}"
        if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
            found.append(f"{where}: rolling update without maxUnavailable 0")
        if pod.get("automountServiceAccountToken") is not False:
            found.append(f"{where}: service account token mounted")
        if name in MESH and pod.get("enableServiceLinks") is not False:
            found.append(f"{where}: enableServiceLinks on (Service variables look like settings)")
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            found.append(f"{where}: pod security context not non-root with seccomp RuntimeDefault")
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            image = c["image"].rsplit(":", 1)[0]
            if name in MESH and image != IMAGE:
                found.append(f"{cw}: image {c['image']} is not the project's")
            if name not in MESH and image not in OTHER_IMAGES:
                found.append(f"{cw}: image {c['image']} is not allowed")
            if c["image"].endswith(":latest") or ":" not in c["image"]:
                found.append(f"{cw}: image without a fixed tag")
            if c.get("imagePullPolicy", "IfNotPresent") == "Always":
                found.append(f"{cw}: imagePullPolicy Always (defeats `kind load` and pulls on every start)")
            sc = c.get("securityContext", {})
            if not (
                sc.get("runAsNonRoot") is True
                and sc.get("readOnlyRootFilesystem") is True
                and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"]
                and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            ):
                found.append(f"{cw}: security context incomplete")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        found.append(f"{cw}: no {part}.{r}")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    found.append(f"{cw}: no {probe}")
            if name in MESH:
                port, ready = MESH[name]
                expect = {
                    "startupProbe": LIVENESS,
                    "livenessProbe": LIVENESS,
                    "readinessProbe": ready,
                }
                for probe, service in expect.items():
                    grpc = c.get(probe, {}).get("grpc")
                    if not grpc or grpc.get("port") != port or grpc.get("service", "") != service:
                        found.append(f"{cw}: {probe} is not gRPC health {service!r} on port {port}")
                if pod.get("terminationGracePeriodSeconds", 30) <= drain:
                    found.append(f"{where}: terminationGracePeriodSeconds not longer than the drain ({drain} s)")
                for env in c.get("env", []):
                    if "value" in env and any(w in env["name"] for w in ("PASSWORD", "SECRET", "TOKEN")):
                        found.append(f"{cw}: {env['name']} is a literal value")
    for s in of_kind(objs, "Secret"):
        found.append(f"Secret {s['metadata']['name']} is written in the manifests")
    for cm in of_kind(objs, "ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            if "postgres" in str(v) and "@" in str(v):
                found.append(f"ConfigMap {cm['metadata']['name']}: {k} holds database credentials")
    services = {o["metadata"]["name"]: o for o in of_kind(objs, "Service")}
    for name, s in services.items():
        if s["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort") and name != "gateway":
            found.append(f"Service {name} is reachable from outside")
    policies = of_kind(objs, "NetworkPolicy")
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        found.append("no default-deny NetworkPolicy")
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            if "from" not in rule and p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") != "gateway":
                found.append(f"NetworkPolicy {p['metadata']['name']}: ingress from anywhere")
    clusters = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Cluster"}
    for name in MESH:
        if name == "gateway":
            continue
        cluster = clusters.get(f"pg-{name}")
        if not cluster or cluster["spec"]["bootstrap"]["initdb"]["database"] != name:
            found.append(f"no CloudNativePG cluster pg-{name} with database {name}")
        secrets = {
            v["secret"]["secretName"]
            for v in deployments.get(name, {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
            if "secret" in v
        }
        if f"pg-{name}-app" not in secrets:
            found.append(f"Deployment {name} does not read its database secret pg-{name}-app")
    if overlay == "prod":
        for name, cluster in clusters.items():
            sync = cluster["spec"].get("postgresql", {}).get("synchronous", {})
            if cluster["spec"]["instances"] < 3 or sync.get("number", 0) < 1 or sync.get("dataDurability") != "required":
                found.append(f"prod: {name} without three instances and a required synchronous standby")
            if "minSyncReplicas" in cluster["spec"] or "maxSyncReplicas" in cluster["spec"]:
                found.append(f"prod: {name} uses the deprecated minSyncReplicas/maxSyncReplicas")
            if not any(p.get("isWALArchiver") for p in cluster["spec"].get("plugins", [])):
                found.append(f"prod: {name} archives no WAL (no backups)")
        backed_up = {b["spec"]["cluster"]["name"] for b in objs if b["kind"] == "ScheduledBackup"}
        for name in clusters:
            if name not in backed_up:
                found.append(f"prod: no ScheduledBackup of {name}")
        gateway = next((s for s in of_kind(objs, "Service") if s["metadata"]["name"] == "gateway"), {"spec": {}})
        if gateway["spec"].get("type") != "LoadBalancer" or gateway["spec"].get("externalTrafficPolicy") != "Local":
            found.append("prod: the gateway's Service is not a LoadBalancer keeping client addresses (externalTrafficPolicy Local)")
        pdbs = {o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for o in of_kind(objs, "PodDisruptionBudget")}
        hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(objs, "HorizontalPodAutoscaler")}
        for name in MESH:
            if name not in pdbs:
                found.append(f"prod: no PodDisruptionBudget for {name}")
            if name not in hpas:
                found.append(f"prod: no HorizontalPodAutoscaler for {name}")
            elif hpas[name]["spec"].get("minReplicas", 1) < 3:
                found.append(f"prod: {name} may scale below three replicas")
        # Every replica of a service holds a pool of its own on the service's
        # database, plus one connection for the outbox relay's LISTEN: at the
        # HPA's maximum and one pod of surge they must fit under the server's
        # max_connections, less its superuser reserve (3).
        pool = int(roaming_config(objs)["data"].get("ROAMING_DATABASE_POOL", "16"))
        for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
            name = hpa["spec"]["scaleTargetRef"]["name"]
            cluster = clusters.get(f"pg-{name}")
            if cluster is None:
                continue
            limit = int(cluster["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", "100")) - 3
            surge = deployments[name]["spec"]["strategy"]["rollingUpdate"].get("maxSurge", 1)
            most = (hpa["spec"]["maxReplicas"] + surge) * (pool + 1)
            if most > limit:
                found.append(f"prod: {name} may open {most} database connections, its server takes {limit}")
    return found


class Nats(unittest.TestCase):
    def test_values_give_three_servers_with_fsync_always(self):
        values = yaml.safe_load((ROOT / "nats" / "values.yaml").read_text())
        config = values["config"]
        self.assertEqual(config["cluster"]["replicas"], 3)
        self.assertTrue(config["jetstream"]["enabled"])
        self.assertTrue(config["jetstream"]["fileStore"]["pvc"]["enabled"])
        self.assertEqual(config["jetstream"]["merge"]["sync_interval"], "always")
        prod = render("prod")
        config_map = next(o for o in prod if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "roaming-config")
        self.assertEqual(config_map["data"]["ROAMING_NATS_STREAM_REPLICAS"], "3")


class Overlays(unittest.TestCase):
    def test_each_overlay_holds(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                self.assertEqual(problems(render(overlay), overlay), [])

    def test_each_check_can_fail(self):
        good = render("prod")
        self.assertEqual(problems(good, "prod"), [])

        def broken(change):
            objs = copy.deepcopy(good)
            change(objs)
            return problems(objs, "prod")

        def deployment(objs, name="reservation"):
            return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)

        def container(objs, name="reservation"):
            return deployment(objs, name)["spec"]["template"]["spec"]["containers"][0]

        cases = {
            "no readiness": lambda o: container(o).pop("readinessProbe"),
            "wrong readiness name": lambda o: container(o)["readinessProbe"]["grpc"].update(service="x"),
            "wrong probe port": lambda o: container(o)["livenessProbe"]["grpc"].update(port=1),
            "no limits": lambda o: container(o)["resources"].pop("limits"),
            "writable root": lambda o: container(o)["securityContext"].update(readOnlyRootFilesystem=False),
            "capabilities kept": lambda o: container(o)["securityContext"]["capabilities"].update(drop=[]),
            "foreign image": lambda o: container(o, "view").update(image="nginx:1.27"),
            "short grace": lambda o: deployment(o)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=10),
            "surge only": lambda o: deployment(o)["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1),
            "token mounted": lambda o: deployment(o)["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
            "no pdb": lambda o: o.remove(next(x for x in o if x["kind"] == "PodDisruptionBudget")),
            "literal secret": lambda o: o.append({"kind": "Secret", "metadata": {"name": "k"}, "stringData": {"a": "b"}}),
            "public service": lambda o: next(x for x in o if x["kind"] == "Service" and x["metadata"]["name"] == "payment")["spec"].update(type="LoadBalancer"),
            "no default deny": lambda o: o.remove(next(x for x in o if x["kind"] == "NetworkPolicy" and x["metadata"]["name"] == "default-deny")),
            "no database": lambda o: o.remove(next(x for x in o if x["kind"] == "Cluster")),
            "async standby": lambda o: next(x for x in o if x["kind"] == "Cluster")["spec"]["postgresql"]["synchronous"].update(dataDurability="preferred"),
            "no wal archive": lambda o: next(x for x in o if x["kind"] == "Cluster")["spec"].pop("plugins"),
            "no scheduled backup": lambda o: o.remove(next(x for x in o if x["kind"] == "ScheduledBackup")),
            "pools over max_connections": lambda o: roaming_config(o)["data"].update(ROAMING_DATABASE_POOL="16"),
            "pull always": lambda o: container(o).update(imagePullPolicy="Always"),
            "service links": lambda o: deployment(o)["spec"]["template"]["spec"].pop("enableServiceLinks"),
            "gateway hides clients": lambda o: next(x for x in o if x["kind"] == "Service" and x["metadata"]["name"] == "gateway")["spec"].pop("externalTrafficPolicy"),
            "low hpa floor": lambda o: next(x for x in o if x["kind"] == "HorizontalPodAutoscaler")["spec"].update(minReplicas=1),
            "open ingress": lambda o: next(x for x in o if x["kind"] == "NetworkPolicy" and x["metadata"]["name"] == "payment")["spec"]["ingress"][0].pop("from"),
        }
        for what, change in cases.items():
            with self.subTest(what):
                self.assertNotEqual(broken(change), [], what)


if __name__ == "__main__":
    unittest.main()
