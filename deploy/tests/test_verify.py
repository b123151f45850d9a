"""deploy/verify against the rendered overlays, and against broken copies of
them: each realistic mistake below must be refused with a line that names it.

Run: python3 -m unittest discover -s deploy/tests   (needs kubectl with
kustomize and PyYAML; .ci/run installs both).
"""

import copy
import importlib.machinery
import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import unittest

import yaml

import test_manifests

ROOT = pathlib.Path(__file__).resolve().parents[1]
_loader = importlib.machinery.SourceFileLoader("deploy_verify", str(ROOT / "verify"))
_spec = importlib.util.spec_from_loader("deploy_verify", _loader)
verify = importlib.util.module_from_spec(_spec)
_loader.exec_module(verify)


def render(overlay):
    """The overlay's objects, each with its namespace (as deploy/verify loads
    them)."""
    docs = test_manifests.render(overlay)
    for d in docs:
        d.setdefault("metadata", {}).setdefault("namespace", "default")
    return docs


def find(objs, kind, name=None, prefix=None):
    for o in objs:
        n = o["metadata"]["name"]
        if o["kind"] == kind and (name is None or n == name) and (prefix is None or n.startswith(prefix)):
            return o
    raise KeyError(f"{kind} {name or prefix}")


def pod(objs, name):
    return find(objs, "Deployment", name)["spec"]["template"]["spec"]


def container(objs, name):
    return pod(objs, name)["containers"][0]


def config(objs):
    return find(objs, "ConfigMap", prefix="roaming-config")["data"]


def env(objs, deployment, name, value):
    for e in container(objs, deployment)["env"]:
        if e["name"] == name:
            e["value"] = value
            return
    raise KeyError(name)


def policy(objs, name):
    return find(objs, "NetworkPolicy", name)["spec"]


def drop_egress_to(objs, name, label_key, label_value):
    rules = policy(objs, name)["egress"]
    before = len(rules)
    rules[:] = [r for r in rules
                if not any(p.get("podSelector", {}).get("matchLabels", {}).get(label_key) == label_value
                           for p in r.get("to", []))]
    assert len(rules) < before, f"no egress rule of {name} to {label_key}={label_value}"


def rename_key(objs, deployment, volume, old, new):
    for v in pod(objs, deployment)["volumes"]:
        if v["name"] == volume:
            for item in v["secret"]["items"]:
                if item["key"] == old:
                    item["key"] = new
                    return
    raise KeyError(old)


def allow_mesh_to_mesh(objs):
    objs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-mesh", "namespace": "roaming"},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "roaming"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "roaming"}}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "roaming"}}}]}],
        },
    })


def certificate(objs, name):
    return find(objs, "Certificate", name)["spec"]


def volume(objs, deployment, name):
    return next(v for v in pod(objs, deployment)["volumes"] if v["name"] == name)


def mount(objs, deployment, name):
    return next(m for m in container(objs, deployment)["volumeMounts"] if m["name"] == name)


def mount_files_with_subpath(objs, deployment, name):
    """The identity's three files mounted one by one with subPath (what one
    does to put them next to other files): each path still resolves."""
    mounts = container(objs, deployment)["volumeMounts"]
    whole = mount(objs, deployment, name)
    mounts.remove(whole)
    for file in ("tls.crt", "tls.key", "ca.crt"):
        mounts.append({"name": name, "mountPath": f"{whole['mountPath']}/{file}", "subPath": file, "readOnly": True})


def drop_env(objs, deployment, name):
    items = container(objs, deployment)["env"]
    before = len(items)
    items[:] = [e for e in items if e["name"] != name]
    assert len(items) < before, name


def collector_env(objs, name, value):
    env(objs, "otel-collector", name, value)


def collector_config(objs, old, new):
    """Edit the collector's otel-collector.yaml (its generated ConfigMap)."""
    data = find(objs, "ConfigMap", prefix="otel-collector-config")["data"]
    assert old in data["otel-collector.yaml"], old
    data["otel-collector.yaml"] = data["otel-collector.yaml"].replace(old, new)


def roaming_service(objs):
    objs.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "roaming-docs", "namespace": "roaming"},
        "spec": {"selector": {"app": "docs"}, "ports": [{"port": 80}]},
    })
    pod(objs, "payment")["enableServiceLinks"] = True


# (what, the change, a piece of the line that must name it)
MISTAKES = [
    # (The misspelt name is built, so the repository's check that every
    # ROAMING_ name in deploy/ is a setting does not read it.)
    ("typo in a ConfigMap key", lambda o: config(o).update({"ROAMING_" + "PAYMNET_ADDRS": config(o).pop("ROAMING_PAYMENT_ADDRS")}),
     "ROAMING_PAYMENT_ADDRS is not set"),
    ("wrong listen port", lambda o: config(o).update(ROAMING_PAYMENT_LISTEN="0.0.0.0:50059"),
     "listens on 50059"),
    ("address naming no Service", lambda o: config(o).update(ROAMING_PAYMENT_ADDRS="http://payments:50052"),
     "no Service payments"),
    ("address on a port the Service lacks", lambda o: config(o).update(ROAMING_VIEW_ADDRS="http://view:50056"),
     "has no port 50056"),
    ("address naming another service's Service", lambda o: config(o).update(ROAMING_VIEW_ADDRS="http://parking:50054"),
     "not Deployment view"),
    ("selector typo", lambda o: find(o, "Service", "payment")["spec"]["selector"].update({"app.kubernetes.io/name": "paymnet"}),
     "selects no pods"),
    ("targetPort typo", lambda o: find(o, "Service", "rental")["spec"]["ports"][0].update(targetPort="grcp"),
     "targets 'grcp'"),
    ("Service not headless", lambda o: find(o, "Service", "reservation")["spec"].pop("clusterIP"),
     "not headless"),
    ("no egress to payment", lambda o: drop_egress_to(o, "reservation", "app.kubernetes.io/name", "payment"),
     "block Deployment reservation -> Deployment payment:50052"),
    ("no egress to NATS", lambda o: drop_egress_to(o, "view", "app.kubernetes.io/name", "nats"),
     "block Deployment view -> StatefulSet nats:4222"),
    ("no egress to PostgreSQL", lambda o: drop_egress_to(o, "parking", "cnpg.io/cluster", "pg-parking"),
     "block Deployment parking -> Cluster pg-parking:5432"),
    ("no DNS", lambda o: o.remove(find(o, "NetworkPolicy", "allow-dns")),
     "-> kube-system/k8s-app=kube-dns:53/UDP"),
    ("no ingress from the gateway", lambda o: policy(o, "rental")["ingress"].clear(),
     "block Deployment gateway -> Deployment rental:50053"),
    ("every mesh pod to every other", allow_mesh_to_mesh,
     "a call nothing makes"),
    ("renamed secret key", lambda o: rename_key(o, "rental", "keys", "rental.pem", "rental-key.pem"),
     "reads key rental-key.pem of Secret roaming-keys"),
    ("_FILE path not mounted", lambda o: env(o, "reservation", "ROAMING_AUTH_SIGNING_KEY_FILE", "/etc/roaming/key/reservation.pem"),
     "ROAMING_AUTH_SIGNING_KEY_FILE /etc/roaming/key/reservation.pem is in no mounted volume"),
    ("_FILE naming a file the volume lacks", lambda o: env(o, "parking", "ROAMING_AUTH_SIGNING_KEY_FILE", "/etc/roaming/keys/parking.key"),
     "has no item at parking.key"),
    ("missing volume", lambda o: pod(o, "payment").update(volumes=[v for v in pod(o, "payment")["volumes"] if v["name"] != "keys"]),
     "mounts volume keys, which the pod does not declare"),
    ("database secret typo", lambda o: next(v for v in pod(o, "view")["volumes"] if v["name"] == "db")["secret"].update(secretName="pg-veiw-app"),
     "Secret pg-veiw-app, which nothing creates"),
    ("NATS URL on a wrong port", lambda o: config(o).update(ROAMING_NATS_URL="nats://nats:4223"),
     "has no port 4223"),
    ("probe on a wrong port", lambda o: container(o, "view")["livenessProbe"]["grpc"].update(port=50054),
     "livenessProbe on port 50054"),
    ("probe naming a health service not served", lambda o: container(o, "view")["readinessProbe"]["grpc"].update(service="roaming.view.v1.View"),
     "which view does not serve"),
    ("grace shorter than the drain", lambda o: pod(o, "gateway").update(terminationGracePeriodSeconds=20),
     "terminationGracePeriodSeconds 20"),
    ("replicas next to an HPA", lambda o: find(o, "Deployment", "parking")["spec"].update(replicas=3),
     "sets replicas (3)"),
    ("PDB selecting nothing", lambda o: find(o, "PodDisruptionBudget", "view")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "veiw"}),
     "selects 0 workloads"),
    ("HPA naming no Deployment", lambda o: find(o, "HorizontalPodAutoscaler", "rental")["spec"]["scaleTargetRef"].update(name="rentals"),
     "Deployment rentals, which does not exist"),
    ("backup of no Cluster", lambda o: find(o, "ScheduledBackup", "pg-view-nightly")["spec"]["cluster"].update(name="pg-veiw"),
     "Cluster pg-veiw does not exist"),
    ("backup credentials renamed", lambda o: find(o, "ObjectStore", "pg-view-backup")["spec"]["configuration"]["s3Credentials"]["accessKeyId"].update(key="ACCESS_KEY"),
     "reads Secret roaming-backup-s3 key ACCESS_KEY"),
    ("headless Service on another port", lambda o: (
        find(o, "Service", "reservation")["spec"]["ports"][0].update(port=80),
        config(o).update(ROAMING_RESERVATION_ADDRS="http://reservation:80")),
     "the client dials Deployment reservation on 80, where it listens on 50051"),
    ("DNS for the mesh only", lambda o: policy(o, "allow-dns").update(
        podSelector={"matchLabels": {"app.kubernetes.io/part-of": "roaming"}}),
     "StatefulSet nats -> kube-system/k8s-app=kube-dns:53/UDP"),
    ("an ipBlock opening everything", lambda o: o.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "wide", "namespace": "roaming"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{}], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}),
     "Deployment gateway -> Deployment payment:9464/TCP through"),
    ("the whole cluster may call reservation", lambda o: policy(o, "reservation")["ingress"][0]["from"].append(
        {"namespaceSelector": {}}),
     "pods of other namespaces -> Deployment reservation:50051/TCP"),
    ("service links with a roaming-* Service", roaming_service,
     "injects " + "ROAMING_" + "DOCS_* variables"),
    # Mesh TLS (cert-manager).
    ("identity files mounted with subPath", lambda o: mount_files_with_subpath(o, "reservation", "mesh-tls"),
     "with subPath tls.crt: a subPath mount never sees a renewal"),
    ("identity certificate without the service's name", lambda o: certificate(o, "mesh-reservation")["dnsNames"].remove("reservation"),
     "Certificate mesh-reservation does not name reservation"),
    ("gateway's identity without client auth", lambda o: certificate(o, "mesh-gateway").update(usages=["digital signature"]),
     "Certificate mesh-gateway lacks usage 'client auth'"),
    ("service identity without server auth", lambda o: certificate(o, "mesh-payment")["usages"].remove("server auth"),
     "Certificate mesh-payment lacks usage 'server auth'"),
    ("plaintext address to a service that requires TLS", lambda o: config(o).update(ROAMING_PAYMENT_ADDRS="http://payment:50052"),
     "'http://payment:50052' is plaintext, but payment requires TLS"),
    ("TLS address to a service serving plaintext only", lambda o: container(o, "view")["env"].append(
        {"name": "ROAMING_MESH_TLS", "value": "off"}),
     "'https://view:50055' speaks TLS to view, which serves plaintext only"),
    ("the CA Issuer missing", lambda o: o.remove(find(o, "Issuer", "roaming-ca")),
     "Certificate mesh-view: issuerRef names Issuer roaming-ca, which is not in the manifests"),
    ("a CA Issuer whose secret is no CA", lambda o: certificate(o, "roaming-ca").pop("isCA"),
     "Issuer roaming-ca: its CA Secret roaming-ca comes from Certificate roaming-ca, which is not isCA"),
    ("an identity from another CA", lambda o: certificate(o, "mesh-payment")["issuerRef"].update(name="roaming-selfsigned"),
     "Certificate mesh-reservation chains to the CA in Secret roaming-ca and mesh-payment to itself"),
    ("the public certificate outside any mount", lambda o: env(o, "gateway", "ROAMING_GATEWAY_TLS_CERT", "/etc/roaming/tls/public/tls.crt"),
     "ROAMING_GATEWAY_TLS_CERT /etc/roaming/tls/public/tls.crt is in no mounted volume"),
    ("the public key from the mesh identity", lambda o: env(o, "gateway", "ROAMING_GATEWAY_TLS_KEY", "/etc/roaming/tls/gateway/tls.key"),
     "come from different Certificates (gateway-public, mesh-gateway)"),
    ("a public certificate without its key", lambda o: drop_env(o, "gateway", "ROAMING_GATEWAY_TLS_KEY"),
     "only ROAMING_GATEWAY_TLS_CERT is set"),
    ("identity mounted under another identity's name", lambda o: mount(o, "rental", "mesh-tls").update(mountPath="/etc/roaming/tls/reservation"),
     "identity file /etc/roaming/tls/rental/tls.crt is in no mounted volume"),
    ("identity files from a Secret no Certificate writes", lambda o: volume(o, "parking", "mesh-tls")["secret"].update(secretName="parking-tls"),
     "comes from Secret parking-tls, which no Certificate writes"),
    ("no directory of identities", lambda o: config(o).pop("ROAMING_MESH_TLS_DIR"),
     "ROAMING_MESH_TLS_DIR is not set, and ROAMING_MESH_TLS=required needs the identity files <dir>/view/"),
    ("a misspelt TLS mode", lambda o: config(o).update(ROAMING_MESH_TLS="require"),
     "ROAMING_MESH_TLS='require' is none of off, optional, required"),
    # The collector's traces (prod: a backend outside the manifests).
    ("the collector not let out to its backend's port", lambda o: policy(o, "otel-collector")["egress"][0]["ports"][0].update(port=4318),
     "block Deployment otel-collector -> monitoring/a pod outside these manifests:4317/TCP"),
    ("the backend's endpoint unset", lambda o: drop_env(o, "otel-collector", "TRACES_BACKEND_ENDPOINT"),
     "exporter otlp/traces sends traces to '${env:TRACES_BACKEND_ENDPOINT}', but TRACES_BACKEND_ENDPOINT is not set"),
    ("a traces pipeline naming an undefined exporter", lambda o: collector_config(o, "exporters: [otlp/traces]", "exporters: [otlp/tempo]"),
     "pipeline traces exports to otlp/tempo, which `exporters` does not define"),
    ("traces to the debug exporter only", lambda o: collector_config(o, "exporters: [otlp/traces]", "exporters: [debug]"),
     "no traces pipeline exports to an OTLP backend"),
]

# The dev overlay's tracing backend, Jaeger in the namespace
# (deploy/observability/jaeger): the collector -> jaeger:4317 edge.
DEV_MISTAKES = [
    ("Jaeger's ingress from the collector dropped", lambda o: policy(o, "jaeger").pop("ingress"),
     "block Deployment otel-collector -> Deployment jaeger:4317/TCP"),
    ("Jaeger's ingress on another port", lambda o: policy(o, "jaeger")["ingress"][0]["ports"][0].update(port=4318),
     "block Deployment otel-collector -> Deployment jaeger:4317/TCP"),
    ("the collector's egress to another workload", lambda o: policy(o, "otel-collector")["egress"][0]["to"][0]["podSelector"].update(
        matchLabels={"app.kubernetes.io/name": "nats"}),
     "block Deployment otel-collector -> Deployment jaeger:4317/TCP"),
    ("Jaeger's Service without the OTLP port", lambda o: find(o, "Service", "jaeger")["spec"]["ports"][0].update(port=14250),
     "'jaeger:4317': Service jaeger has no port 4317"),
    ("Jaeger's Service on the UI's port", lambda o: find(o, "Service", "jaeger")["spec"]["ports"][0].update(targetPort="ui"),
     "Service jaeger port 4317 reaches Deployment jaeger on 16686, where it listens on 4317"),
    ("Jaeger's Service selecting the collector", lambda o: find(o, "Service", "jaeger")["spec"].update(
        selector={"app.kubernetes.io/name": "otel-collector"}),
     "Service jaeger selects Deployment otel-collector, not Deployment jaeger"),
    ("the backend's name misspelt", lambda o: collector_env(o, "TRACES_BACKEND_ENDPOINT", "jager:4317"),
     "exporter otlp/traces 'jager:4317': no Service jager in namespace roaming"),
    ("the backend's port wrong", lambda o: collector_env(o, "TRACES_BACKEND_ENDPOINT", "jaeger:16686"),
     "Service jaeger port 16686 reaches Deployment jaeger on 16686, where it listens on 4317"),
    ("Jaeger's OTLP port unnamed", lambda o: pod(o, "jaeger")["containers"][0]["ports"][0].pop("name"),
     "no workload of namespace roaming other than the collector declares a containerPort named otlp-grpc"),
    ("Jaeger's UI open to the cluster", lambda o: policy(o, "jaeger")["ingress"].append(
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": 16686, "protocol": "TCP"}]}),
     "pods of other namespaces -> Deployment jaeger:16686/TCP through"),
    ("the collector sent to Tempo outside again", lambda o: collector_env(o, "TRACES_BACKEND_ENDPOINT", "tempo.monitoring:4317"),
     "block Deployment otel-collector -> monitoring/a pod outside these manifests:4317/TCP"),
]


class Verify(unittest.TestCase):
    def test_both_overlays_hold(self):
        for overlay in ("dev", "prod"):
            with self.subTest(overlay=overlay):
                self.assertEqual(verify.verify(render(overlay)), [])

    def assert_each_refused_by_name(self, overlay, mistakes):
        """Each broken copy of the `overlay` render gets a line naming it."""
        good = render(overlay)
        self.assertEqual(verify.verify(copy.deepcopy(good)), [])
        for what, change, expect in mistakes:
            with self.subTest(what):
                objs = copy.deepcopy(good)
                change(objs)
                problems = verify.verify(objs)
                self.assertTrue(any(expect in p for p in problems),
                                f"{what}: no line contains {expect!r}; got {problems}")

    def test_each_mistake_is_refused_by_name(self):
        self.assert_each_refused_by_name("prod", MISTAKES)

    def test_each_trace_backend_mistake_is_refused_by_name(self):
        self.assert_each_refused_by_name("dev", DEV_MISTAKES)

    def test_each_step_from_plaintext_to_required_tls_holds(self):
        # deploy/README.md, "TLS": off, optional, https:// addresses, required.
        # Plaintext with nothing mounted holds too (the mesh before TLS).
        good = render("prod")
        plain = {k: config(good)[k].replace("https://", "http://") for k in config(good) if k.endswith("_ADDRS")}
        steps = {
            "off, plaintext, no certificates": ("off", False, True),
            "off, plaintext, certificates mounted": ("off", False, False),
            "optional, plaintext": ("optional", False, False),
            "optional, https": ("optional", True, False),
            "required, https": ("required", True, False),
        }
        for step, (mode, https, bare) in steps.items():
            with self.subTest(step):
                objs = copy.deepcopy(good)
                config(objs)["ROAMING_MESH_TLS"] = mode
                if not https:
                    config(objs).update(plain)
                if bare:
                    for o in objs:
                        if o["kind"] == "Deployment":
                            spec = o["spec"]["template"]["spec"]
                            spec["volumes"] = [v for v in spec["volumes"] if not v["name"].endswith("-tls")]
                            c = spec["containers"][0]
                            c["volumeMounts"] = [m for m in c["volumeMounts"] if not m["name"].endswith("-tls")]
                            c["env"] = [e for e in c["env"] if e["name"] not in ("ROAMING_GATEWAY_TLS_CERT", "ROAMING_GATEWAY_TLS_KEY")]
                self.assertEqual(verify.verify(objs), [])
        objs = copy.deepcopy(good)
        config(objs)["ROAMING_MESH_TLS"] = "off"
        self.assertTrue(any("serves plaintext only" in p for p in verify.verify(objs)),
                        "https:// addresses before the services take TLS")

    def test_the_command_prints_one_line_per_problem_and_fails(self):
        broken = render("dev")
        config(broken)["ROAMING_PAYMENT_LISTEN"] = "0.0.0.0:1"
        with tempfile.TemporaryDirectory() as tmp:
            good_path, bad_path = pathlib.Path(tmp, "good.yaml"), pathlib.Path(tmp, "bad.yaml")
            good_path.write_text(yaml.safe_dump_all(render("dev")))
            bad_path.write_text(yaml.safe_dump_all(broken))
            ok = subprocess.run([sys.executable, str(ROOT / "verify"), str(good_path)], capture_output=True, text=True)
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            bad = subprocess.run([sys.executable, str(ROOT / "verify"), str(bad_path)], capture_output=True, text=True)
            self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)
            self.assertIn("listens on 1 (ROAMING_PAYMENT_LISTEN)", bad.stdout)
            missing = subprocess.run([sys.executable, str(ROOT / "verify"), str(pathlib.Path(tmp, "none.yaml"))],
                                     capture_output=True, text=True)
            self.assertEqual(missing.returncode, 2)

    def test_an_issuer_outside_the_manifests_is_said_to_be_assumed(self):
        # prod's public certificate comes from the operator's ClusterIssuer.
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp, "prod.yaml")
            path.write_text(yaml.safe_dump_all(render("prod")))
            out = subprocess.run([sys.executable, str(ROOT / "verify"), str(path)], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("note: Certificate gateway-public: ClusterIssuer roaming-public is assumed to exist", out.stdout)
        # prod's collector sends traces to a backend of the monitoring namespace.
        self.assertIn("exporter otlp/traces sends traces to tempo.monitoring:4317, Service tempo of namespace "
                      "monitoring, which is not in these manifests: assumed to exist", out.stdout)
        notes = []
        self.assertEqual(verify.verify(render("dev"), notes), [])
        self.assertEqual(notes, [], "dev issues everything from the namespace CA and keeps its traces in Jaeger")


if __name__ == "__main__":
    unittest.main()
