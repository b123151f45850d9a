"""What the rendered Kubernetes manifests must hold (deploy/README.md).

Run: python3 -m unittest discover -s deploy/tests   (needs kubectl with kustomize
and PyYAML; .ci/run installs both). Each overlay is rendered with
`kubectl kustomize`; the checks then run on the objects. The last test case
breaks a rendered copy in each way the checks look for and proves each check
notices.
"""

import copy
import pathlib
import re
import subprocess
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERLAYS = ["dev", "prod"]
IMAGE = "ghcr.io/roaming-mesh/roaming"
# Third-party images the overlays may run besides the project's own.
OTHER_IMAGES = {"otel/opentelemetry-collector-contrib", "nats", "jaegertracing/all-in-one"}
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


# NATS (deploy/nats): what the services and the servers need of each other.
NATS_PROBES = {
    # As the official chart: started when caught up, ready while current with
    # the meta leader, alive while JetStream runs (deploy/nats/nats.yaml).
    "startupProbe": "/healthz",
    "readinessProbe": "/healthz?js-server-only=true",
    "livenessProbe": "/healthz?js-enabled-only=true",
}
SIZE = re.compile(r"^(\d+)\s*([A-Za-z]*)$")
UNITS = {
    "": 1, "k": 1000, "kb": 1024, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1024**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1024**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1024**4, "ti": 1024**4, "tib": 1024**4,
}


def size_bytes(text):
    """A size as NATS (18GiB, 18G) or Kubernetes (20Gi) writes it, in bytes."""
    match = SIZE.match(text.strip())
    if not match or match.group(2).lower() not in UNITS:
        return None
    return int(match.group(1)) * UNITS[match.group(2).lower()]


GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def hours(text):
    """A Go duration as cert-manager takes it (2160h, 1h30m) in hours."""
    parts = GO_DURATION.findall(str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        return None
    return sum(float(n) * {"h": 1, "m": 1 / 60, "s": 1 / 3600}[u] for n, u in parts)


def tls_problems(objs, overlay):
    """Mesh TLS (deploy/k8s/base/certificates.yaml): required, over https://,
    ECDSA keys, leaves with a new key at each renewal, a CA that keeps its key
    and renews before any leaf it signed could outlive its certificate."""
    found = []
    config = roaming_config(objs)["data"]
    if config.get("ROAMING_MESH_TLS") != "required":
        found.append(f"{overlay}: ROAMING_MESH_TLS is {config.get('ROAMING_MESH_TLS', 'off')!r}, not required")
    for k, v in config.items():
        if k.endswith("_ADDRS") and not all(u.strip().startswith("https://") for u in v.split(",")):
            found.append(f"{overlay}: {k}={v} is not https://")
    certs = of_kind(objs, "Certificate")
    issuers = {o["metadata"]["name"]: o for o in of_kind(objs, "Issuer")}
    by_secret = {c["spec"]["secretName"]: c for c in certs}
    for c in certs:
        name, spec = c["metadata"]["name"], c["spec"]
        key = spec.get("privateKey", {})
        if key.get("algorithm") != "ECDSA":
            found.append(f"Certificate {name}: key algorithm {key.get('algorithm', 'RSA')}, not ECDSA")
        duration, renew = hours(spec.get("duration", "")), hours(spec.get("renewBefore", ""))
        if duration is None or renew is None or not 0 < renew < duration:
            found.append(f"Certificate {name}: duration {spec.get('duration')} and renewBefore {spec.get('renewBefore')} "
                         "are not a renewal inside the validity")
        if spec.get("isCA"):
            # A renewed CA keeps its key: the ca.crt pods hold from before
            # verifies what it signs after, and the other way round.
            if key.get("rotationPolicy") != "Never":
                found.append(f"Certificate {name}: a CA whose renewal changes its key (rotationPolicy "
                             f"{key.get('rotationPolicy', 'Always')}): pods holding the old ca.crt stop trusting the others")
        elif key.get("rotationPolicy") != "Always":
            found.append(f"Certificate {name}: renewal keeps the key (rotationPolicy {key.get('rotationPolicy')})")
        ref = spec.get("issuerRef", {})
        issuer = issuers.get(ref.get("name")) if ref.get("kind", "Issuer") == "Issuer" else None
        ca = by_secret.get(((issuer or {}).get("spec", {}).get("ca") or {}).get("secretName"))
        if ca is not None and duration is not None:
            # Every leaf is re-issued (with the renewed CA in its ca.crt)
            # before the CA certificate it was signed under ends.
            ca_renew = hours(ca["spec"].get("renewBefore", ""))
            if ca_renew is None or ca_renew < duration:
                found.append(f"Certificate {name}: lives {spec.get('duration')}, longer than its CA "
                             f"{ca['metadata']['name']} is renewed before its end ({ca['spec'].get('renewBefore')})")
    public = next((c for c in certs if c["metadata"]["name"] == "gateway-public"), None)
    if public is None:
        found.append(f"{overlay}: no Certificate gateway-public for the gateway's public port")
    elif overlay == "prod" and public["spec"].get("issuerRef", {}).get("kind", "Issuer") == "Issuer":
        found.append("prod: the public certificate comes from an Issuer of the namespace, which clients do not trust")
    return found


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def rule_allows(peers, ports, labels, port):
    """One ingress/egress rule lets a pod of this namespace with `labels` on `port`."""
    if ports and not any(p.get("port") == port for p in ports):
        return False
    if not peers:
        return True
    return any("namespaceSelector" not in peer and "podSelector" in peer and selects(peer["podSelector"], labels)
               for peer in peers)


def connects(policies, src, dst, port):
    """NetworkPolicies let a pod labelled `src` open `port` on a pod labelled
    `dst` (both in the namespace): an egress rule of a policy selecting the
    source and an ingress rule of one selecting the destination."""
    out = any(rule_allows(r.get("to", []), r.get("ports", []), dst, port)
              for p in policies if selects(p["spec"]["podSelector"], src)
              for r in p["spec"].get("egress", []))
    into = any(rule_allows(r.get("from", []), r.get("ports", []), src, port)
               for p in policies if selects(p["spec"]["podSelector"], dst)
               for r in p["spec"].get("ingress", []))
    return out and into


def nats_problems(objs, overlay):
    found = []
    sts = next((o for o in of_kind(objs, "StatefulSet") if o["metadata"]["name"] == "nats"), None)
    if sts is None:
        return ["no StatefulSet nats"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    servers = spec.get("replicas", 1)
    want = 1 if overlay == "dev" else 3
    if servers != want:
        found.append(f"{overlay}: {servers} NATS servers, not {want}")
    if spec.get("podManagementPolicy") != "Parallel":
        found.append("StatefulSet nats does not start its servers in parallel")
    config = roaming_config(objs)["data"]
    copies = int(config.get("ROAMING_NATS_STREAM_REPLICAS", "1"))
    if copies > servers or (overlay == "prod" and copies != 3):
        found.append(f"{overlay}: streams with {copies} copies on {servers} NATS servers")
    # The services' URL names the client Service and its port.
    url = config.get("ROAMING_NATS_URL", "")
    services = {o["metadata"]["name"]: o for o in of_kind(objs, "Service")}
    host, _, port = url.removeprefix("nats://").partition(":")
    client = services.get(host)
    if not client or not selects({"matchLabels": client["spec"].get("selector", {})}, labels) \
            or int(port or 4222) not in [p["port"] for p in client["spec"]["ports"]]:
        found.append(f"ROAMING_NATS_URL {url} does not reach the NATS pods")
    headless = services.get(spec.get("serviceName"))
    if not headless or headless["spec"].get("clusterIP") != "None" or not headless["spec"].get("publishNotReadyAddresses"):
        found.append("StatefulSet nats without a headless Service publishing servers before they are ready")
    # The config the pods mount.
    volume = next((v for v in pod.get("volumes", []) if "configMap" in v), None)
    conf_map = next((o for o in of_kind(objs, "ConfigMap") if volume and o["metadata"]["name"] == volume["configMap"]["name"]), None)
    conf = (conf_map or {}).get("data", {}).get("nats.conf", "")
    if not conf:
        found.append("StatefulSet nats mounts no nats.conf")
    if not re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.M):
        found.append(f"{overlay}: NATS does not fsync before acknowledging (sync_interval: always)")
    if not re.search(r"^\s*server_name:\s*\$SERVER_NAME\s*$", conf, re.M):
        found.append(f"{overlay}: server_name is not the pod's name")
    routes = set(re.findall(r"nats://([\w.-]+):6222", conf))
    cluster = re.search(r"^\s*cluster\s*\{", conf, re.M)
    if servers > 1:
        expect = {f"nats-{i}.{spec.get('serviceName')}" for i in range(servers)}
        if not cluster or routes != expect:
            found.append(f"{overlay}: routes {sorted(routes)} are not the {servers} servers {sorted(expect)}")
    elif cluster:
        found.append(f"{overlay}: one NATS server with a cluster block")
    store = re.search(r"^\s*max_file_store:\s*(\S+)\s*$", conf, re.M)
    claim = next((c for c in spec.get("volumeClaimTemplates", []) if c["metadata"]["name"] in
                  {m["name"] for c_ in pod["containers"] for m in c_.get("volumeMounts", []) if m["mountPath"] == "/data"}), None)
    if not store or not claim:
        found.append(f"{overlay}: NATS without max_file_store or a volume claim for /data")
    else:
        limit, volume_size = size_bytes(store.group(1)), size_bytes(claim["spec"]["resources"]["requests"]["storage"])
        if limit is None or volume_size is None or limit >= volume_size:
            found.append(f"{overlay}: max_file_store {store.group(1)} does not fit the volume of "
                         f"{claim['spec']['resources']['requests']['storage']}")
    container = pod["containers"][0]
    for probe, path in NATS_PROBES.items():
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("monitor", 8222):
            found.append(f"StatefulSet nats: {probe} is not {path} on the monitor port")
    if "ldm" not in " ".join(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])):
        found.append("StatefulSet nats: no lame-duck preStop hook")
    if not any(selects(p["spec"]["selector"], labels) and p["spec"].get("maxUnavailable") == 1
               for p in of_kind(objs, "PodDisruptionBudget")):
        found.append(f"{overlay}: no PodDisruptionBudget for NATS (one server at a time)")
    # Network: the five services reach the clients' port, the servers each
    # other's routes, the gateway nothing of NATS.
    policies = of_kind(objs, "NetworkPolicy")
    deployments = {o["metadata"]["name"]: o for o in of_kind(objs, "Deployment")}
    for name in MESH:
        if name not in deployments:
            continue
        src = deployments[name]["spec"]["template"]["metadata"]["labels"]
        allowed = connects(policies, src, labels, 4222)
        if allowed != (name != "gateway"):
            found.append(f"NetworkPolicies: {name} {'may' if allowed else 'may not'} reach NATS on 4222")
    if not connects(policies, labels, labels, 6222):
        found.append("NetworkPolicies: NATS servers may not reach each other's routes on 6222")
    return found


def problems(objs, overlay):
    """Every way `objs` (one rendered overlay) falls short, as sentences."""
    found = []
    deployments = {o["metadata"]["name"]: o for o in of_kind(objs, "Deployment")}
    for name in MESH:
        if name not in deployments:
            found.append(f"no Deployment {name}")
    drain = drain_seconds(objs)
    workloads = [(d["kind"], name, d) for name, d in deployments.items()]
    workloads += [("StatefulSet", s["metadata"]["name"], s) for s in of_kind(objs, "StatefulSet")]
    for kind, name, d in workloads:
        spec = d["spec"]
        pod = spec["template"]["spec"]
        where = f"{kind} {name}"
        if kind == "Deployment" and spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
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
    found += nats_problems(objs, overlay)
    found += tls_problems(objs, overlay)
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
    def test_go_durations(self):
        self.assertEqual(hours("2160h"), 2160)
        self.assertEqual(hours("1h30m"), 1.5)
        self.assertIsNone(hours("90d"))
        self.assertIsNone(hours(""))

    def test_size_units(self):
        self.assertEqual(size_bytes("18GiB"), 18 * 1024**3)
        self.assertEqual(size_bytes("20Gi"), 20 * 1024**3)
        self.assertEqual(size_bytes("18G"), 18 * 1000**3)
        self.assertIsNone(size_bytes('"18Gi"'))

    def test_each_nats_check_can_fail(self):
        for overlay in OVERLAYS:
            good = render(overlay)
            self.assertEqual(nats_problems(good, overlay), [])

            def broken(change):
                objs = copy.deepcopy(good)
                change(objs)
                return nats_problems(objs, overlay)

            def sts(objs):
                return next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats")

            def conf_edit(old, new):
                def change(objs):
                    name = sts(objs)["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
                    data = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)["data"]
                    self.assertIn(old, data["nats.conf"])
                    data["nats.conf"] = data["nats.conf"].replace(old, new)
                return change

            def policy(objs, name):
                return next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name)

            store = "max_file_store: 18GiB" if overlay == "prod" else "max_file_store: 1536MiB"
            cases = {
                "server count": lambda o: sts(o)["spec"].update(replicas=2),
                "ordered start": lambda o: sts(o)["spec"].pop("podManagementPolicy"),
                "lazy fsync": conf_edit("sync_interval: always", "sync_interval: 2m"),
                "fixed server name": conf_edit("server_name: $SERVER_NAME", "server_name: nats"),
                "store over the volume": conf_edit(store, "max_file_store: 30GiB"),
                "readiness on full health": lambda o: sts(o)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(path="/healthz"),
                "liveness on the meta leader": lambda o: sts(o)["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"].update(path="/healthz?js-server-only=true"),
                "no lame duck": lambda o: sts(o)["spec"]["template"]["spec"]["containers"][0].pop("lifecycle"),
                "no pdb": lambda o: o.remove(next(x for x in o if x["kind"] == "PodDisruptionBudget" and x["metadata"]["name"] == "nats")),
                "headless hides starting servers": lambda o: next(x for x in o if x["kind"] == "Service" and x["metadata"]["name"] == "nats-headless")["spec"].pop("publishNotReadyAddresses"),
                "client Service elsewhere": lambda o: next(x for x in o if x["kind"] == "Service" and x["metadata"]["name"] == "nats")["spec"].update(selector={"app.kubernetes.io/name": "other"}),
                "services cut off": lambda o: policy(o, "nats")["spec"]["ingress"].pop(0),
                "routes cut off": lambda o: policy(o, "nats")["spec"].pop("egress"),
                # Both ends: the gateway's egress and NATS taking all of the mesh.
                "gateway let in": lambda o: (
                    policy(o, "gateway")["spec"]["egress"].append(
                        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}], "ports": [{"port": 4222, "protocol": "TCP"}]}),
                    policy(o, "nats")["spec"]["ingress"][0]["from"][0].update(podSelector={"matchLabels": {"app.kubernetes.io/part-of": "roaming"}})),
            }
            if overlay == "prod":
                cases["a missing route"] = conf_edit("    nats://nats-2.nats-headless:6222\n", "")
                cases["streams over servers"] = lambda o: roaming_config(o)["data"].update(ROAMING_NATS_STREAM_REPLICAS="1")
            else:
                cases["a cluster of one"] = conf_edit("jetstream {", "cluster { name: nats, port: 6222, routes: [nats://nats-0.nats-headless:6222] }\njetstream {")
                cases["streams over servers"] = lambda o: roaming_config(o)["data"].update(ROAMING_NATS_STREAM_REPLICAS="3")
            for what, change in cases.items():
                with self.subTest(what, overlay=overlay):
                    self.assertNotEqual(broken(change), [], what)


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

        def certificate(objs, name):
            return next(x for x in objs if x["kind"] == "Certificate" and x["metadata"]["name"] == name)["spec"]

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
            "nats as root": lambda o: next(x for x in o if x["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(runAsNonRoot=False),
            "nats unbounded": lambda o: next(x for x in o if x["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"),
            "nats on latest": lambda o: next(x for x in o if x["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0].update(image="nats:latest"),
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
            "mesh TLS optional": lambda o: roaming_config(o)["data"].update(ROAMING_MESH_TLS="optional"),
            "plaintext upstream": lambda o: roaming_config(o)["data"].update(ROAMING_VIEW_ADDRS="http://view:50055"),
            "rsa key": lambda o: certificate(o, "mesh-view")["privateKey"].update(algorithm="RSA", size=2048),
            "leaf keeps its key": lambda o: certificate(o, "mesh-rental")["privateKey"].update(rotationPolicy="Never"),
            "ca changes its key": lambda o: certificate(o, "roaming-ca")["privateKey"].update(rotationPolicy="Always"),
            "ca renewed too late": lambda o: certificate(o, "roaming-ca").update(renewBefore="720h"),
            "renewal after the end": lambda o: certificate(o, "mesh-payment").update(renewBefore="3000h"),
            "public from the namespace ca": lambda o: certificate(o, "gateway-public").update(
                issuerRef={"name": "roaming-ca", "kind": "Issuer", "group": "cert-manager.io"}),
        }
        for what, change in cases.items():
            with self.subTest(what):
                self.assertNotEqual(broken(change), [], what)


if __name__ == "__main__":
    unittest.main()
