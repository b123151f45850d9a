"""deploy/check-config: every roaming container of each rendered overlay is
accepted by `roaming check-config`, and a broken copy is refused with the
line that names what broke.

Run: python3 -m unittest discover -s deploy/tests   (needs kubectl with
kustomize, PyYAML and the roaming binary: CHECK_CONFIG_BIN names it, else
`cargo build -p services-roaming` builds it and says where; .ci/run sets it).
CertificateSecrets and Placeholders need no binary (a stand-in plays it).
"""

import copy
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

import yaml

from test_manifests import render

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "check-config"
MESH = ["gateway", "reservation", "payment", "rental", "parking", "view"]
# Names of settings are built from this, so that a misspelt one in a test
# case is not taken for a setting the deployment names.
PREFIX = "ROAMING_"


def script_module():
    loader = importlib.machinery.SourceFileLoader("check_config", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_config", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def roaming_binary():
    """CHECK_CONFIG_BIN, or the binary `cargo build` makes (and names)."""
    given = os.environ.get("CHECK_CONFIG_BIN")
    if given:
        if not os.access(given, os.X_OK):
            raise AssertionError(f"CHECK_CONFIG_BIN={given} is not an executable roaming binary")
        return given
    try:
        out = subprocess.run(
            ["cargo", "build", "-p", "services-roaming", "--bin", "roaming", "--message-format=json"],
            cwd=ROOT.parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise AssertionError(
            "no roaming binary: set CHECK_CONFIG_BIN to one (cargo build -p services-roaming) "
            "or put cargo on PATH"
        ) from e
    if out.returncode != 0:
        raise AssertionError(f"cargo build -p services-roaming failed:\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("target", {}).get("name") == "roaming":
            if message.get("executable"):
                return message["executable"]
    raise AssertionError("cargo build -p services-roaming named no roaming executable")


def run(binary, objs):
    """deploy/check-config on `objs`: (exit status, output lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "rendered.yaml"
        path.write_text(yaml.safe_dump_all(objs))
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "--bin", binary, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    return out.returncode, (out.stdout + out.stderr).splitlines()


def deployment(objs, name):
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def pod(objs, name):
    return deployment(objs, name)["spec"]["template"]["spec"]


def container(objs, name):
    return pod(objs, name)["containers"][0]


def env_item(objs, name, variable):
    return next(e for e in container(objs, name)["env"] if e["name"] == variable)


def shared_config(objs):
    """The ConfigMap of settings every process reads (its name may carry a hash)."""
    return next(
        o for o in objs if o["kind"] == "ConfigMap" and PREFIX + "RESERVATION_LISTEN" in (o.get("data") or {})
    )


def rename_key(mapping, old, new):
    mapping[new] = mapping.pop(old)


class CheckConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = roaming_binary()

    def test_each_overlay_is_accepted_by_the_binary(self):
        for overlay in ["dev", "prod"]:
            with self.subTest(overlay=overlay):
                status, lines = run(self.binary, render(overlay))
                self.assertEqual(status, 0, "\n".join(lines))
                for name in MESH:
                    self.assertTrue(
                        any(line.startswith(f"{name}/{name}: ok: serve {name}: ") for line in lines),
                        f"{name} not checked:\n" + "\n".join(lines),
                    )

    def test_a_broken_copy_is_refused_with_the_line_naming_it(self):
        good = render("prod")
        no_such_file = "No such file or directory (os error 2)"
        cases = {
            "misspelt setting in the ConfigMap": (
                lambda o: rename_key(shared_config(o)["data"], PREFIX + "RESERVATION_LISTEN", PREFIX + "RESERVATON_LISTEN"),
                f"reservation/reservation: invalid setting {PREFIX}RESERVATON_LISTEN: unknown setting",
            ),
            "listen port that is no number": (
                lambda o: shared_config(o)["data"].update({PREFIX + "RESERVATION_LISTEN": "0.0.0.0:abc"}),
                f"reservation/reservation: invalid setting {PREFIX}RESERVATION_LISTEN: invalid socket address syntax",
            ),
            "a _FILE path no volume holds": (
                lambda o: env_item(o, "reservation", PREFIX + "RESERVATION_DATABASE_URL_FILE").update(
                    value="/etc/roaming/database/uri"
                ),
                f"reservation/reservation: invalid setting {PREFIX}RESERVATION_DATABASE_URL_FILE: "
                f"/etc/roaming/database/uri: {no_such_file}",
            ),
            "a key file the volume does not project": (
                lambda o: env_item(o, "reservation", PREFIX + "AUTH_SIGNING_KEY_FILE").update(
                    value="/etc/roaming/keys/payment.pem"
                ),
                f"reservation/reservation: invalid setting {PREFIX}AUTH_SIGNING_KEY_FILE: "
                f"/etc/roaming/keys/payment.pem: {no_such_file}",
            ),
            "a mount without its volume": (
                lambda o: pod(o, "reservation").update(
                    volumes=[v for v in pod(o, "reservation")["volumes"] if v["name"] != "db"]
                ),
                "reservation/reservation: volumeMount db (/etc/roaming/db): no volume db",
            ),
            "a renamed secret key": (
                lambda o: next(
                    i
                    for v in pod(o, "reservation")["volumes"]
                    if v["name"] == "keys"
                    for i in v["secret"]["items"]
                    if i["key"] == "reservation.pem"
                ).update(key="reservation-key.pem"),
                "reservation/reservation: volume keys: Secret roaming-keys has no key reservation-key.pem",
            ),
            "a secret nobody creates": (
                lambda o: next(v for v in pod(o, "payment")["volumes"] if v["name"] == "db")["secret"].update(
                    secretName="pg-payments-app"
                ),
                "payment/payment: Secret pg-payments-app is neither in the manifests nor one the operator "
                "(deploy/README.md, step 2) or CloudNativePG creates",
            ),
            "a ConfigMap that is not rendered": (
                lambda o: container(o, "view")["envFrom"][0]["configMapRef"].update(name="roaming-settings"),
                "view/view: ConfigMap roaming-settings is not in the manifests",
            ),
            "the gateway's logins file misnamed": (
                lambda o: container(o, "gateway").update(
                    args=["serve", "gateway", "--config", "/etc/roaming/gateway/logins.toml"]
                ),
                f"gateway/gateway: invalid setting config file: /etc/roaming/gateway/logins.toml: {no_such_file}",
            ),
            "a service without the replicas it calls": (
                lambda o: shared_config(o)["data"].pop(PREFIX + "RESERVATION_ADDRS"),
                f"rental/rental: invalid setting {PREFIX}RESERVATION_ADDRS: not set: "
                "rental asks the reservation service before every hand-over",
            ),
        }
        for what, (change, expected) in cases.items():
            with self.subTest(what):
                objs = copy.deepcopy(good)
                change(objs)
                status, lines = run(self.binary, objs)
                self.assertEqual(status, 1, "\n".join(lines))
                self.assertIn(expected, lines)
                self.assertFalse(any(": ok: " in line for line in lines), "\n".join(lines))


# A stand-in for the binary: `certs` writes a CA and one directory per
# identity whose files say what they are, `keygen` a key, and `check-config
# serve S` reads what the real one reads of TLS (the identity's files under
# the mesh TLS directory, the gateway's public certificate and key) and fails
# unless each file is the one `certs` wrote for it. Every `certs` call is
# logged to $STAND_IN_LOG.
STAND_IN = """#!{python}
import os, pathlib, sys
IDENTITIES = {identities!r}
FILES = ["tls.crt", "tls.key", "ca.crt"]
args = sys.argv[1:]
if args[0] == "certs":
    out = pathlib.Path(args[args.index("--out") + 1])
    hosts = [args[i + 1] for i, a in enumerate(args) if a == "--host"]
    with open(os.environ["STAND_IN_LOG"], "a") as log:
        log.write(" ".join(hosts) + "\\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.crt").write_text("ca tls.crt")
    (out / "ca.key").write_text("ca tls.key")
    for d in IDENTITIES + ["public"]:
        (out / d).mkdir(exist_ok=True)
        for f in FILES:
            (out / d / f).write_text("ca tls.crt" if f == "ca.crt" else f"{{d}} {{f}}")
elif args[0] == "keygen":
    pathlib.Path(args[1]).write_text("key")
    print("x" + pathlib.Path(args[1]).stem)
elif args[0] == "check-config":
    service = args[2]
    want = {{}}
    for f in FILES:
        want[os.path.join(os.environ["{prefix}MESH_TLS_DIR"], service, f)] = "ca tls.crt" if f == "ca.crt" else f"{{service}} {{f}}"
    if service == "gateway":
        want[os.environ["{prefix}GATEWAY_TLS_CERT"]] = "public tls.crt"
        want[os.environ["{prefix}GATEWAY_TLS_KEY"]] = "public tls.key"
    wrong = [p for p, text in want.items() if not os.path.isfile(p) or open(p).read() != text]
    if wrong:
        sys.exit(" ".join(f"{{p}}: not the file certs wrote for it" for p in wrong))
    print(f"ok: serve {{service}}: stand-in")
else:
    sys.exit(f"unknown command {{args[0]}}")
"""


class CertificateSecrets(unittest.TestCase):
    """The Secrets cert-manager writes, laid out from `roaming certs` (a
    stand-in binary here: the check needs no build)."""

    def stand_in(self, tmp):
        path = pathlib.Path(tmp) / "roaming"
        path.write_text(STAND_IN.format(python=sys.executable, identities=MESH, prefix=PREFIX))
        path.chmod(0o755)
        return str(path)

    def test_each_certificate_secret_holds_the_files_certs_wrote_for_it(self):
        hosts = {
            # dev: the namespace CA issues the public certificate for the
            # gateway's Service names (localhost is in every public one).
            "dev": "gateway gateway.roaming gateway.roaming.svc gateway.roaming.svc.cluster.local",
            # prod: your public host name.
            "prod": "roaming.example.com",
        }
        for overlay in ["dev", "prod"]:
            with self.subTest(overlay=overlay), tempfile.TemporaryDirectory() as tmp:
                binary, log = self.stand_in(tmp), pathlib.Path(tmp) / "certs.log"
                path = pathlib.Path(tmp) / "rendered.yaml"
                path.write_text(yaml.safe_dump_all(render(overlay)))
                out = subprocess.run(
                    [sys.executable, str(SCRIPT), "--bin", binary, str(path)],
                    capture_output=True, text=True, check=False,
                    env={**os.environ, "STAND_IN_LOG": str(log)},
                )
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                for name in MESH:
                    self.assertIn(f"{name}/{name}: ok: serve {name}: stand-in", out.stdout.splitlines())
                self.assertEqual(log.read_text().splitlines(), [hosts[overlay]], "certs runs once per overlay")

    def test_a_mesh_identity_mounted_from_another_certificate_is_refused(self):
        objs = render("dev")
        next(v for v in pod(objs, "rental")["volumes"] if v["name"] == "mesh-tls")["secret"]["secretName"] = "mesh-view-tls"
        with tempfile.TemporaryDirectory() as tmp:
            binary = self.stand_in(tmp)
            path = pathlib.Path(tmp) / "rendered.yaml"
            path.write_text(yaml.safe_dump_all(objs))
            out = subprocess.run(
                [sys.executable, str(SCRIPT), "--bin", binary, str(path)],
                capture_output=True, text=True, check=False,
                env={**os.environ, "STAND_IN_LOG": str(pathlib.Path(tmp) / "log")},
            )
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("rental/rental: /etc/roaming/tls/rental/tls.crt: not the file certs wrote for it", out.stdout)

    def test_a_binary_without_certs_is_unusable_input(self):
        with tempfile.TemporaryDirectory() as tmp:
            binary = pathlib.Path(tmp) / "roaming"
            # A binary from before `certs`: keygen works, certs is unknown.
            binary.write_text(
                f"#!{sys.executable}\nimport pathlib, sys\n"
                "if sys.argv[1] != 'keygen':\n    sys.exit('usage: roaming up')\n"
                "pathlib.Path(sys.argv[2]).write_text('key')\nprint('x')\n"
            )
            binary.chmod(0o755)
            path = pathlib.Path(tmp) / "rendered.yaml"
            path.write_text(yaml.safe_dump_all(render("dev")))
            out = subprocess.run([sys.executable, str(SCRIPT), "--bin", str(binary), str(path)],
                                 capture_output=True, text=True, check=False)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn("certs: usage: roaming up", out.stderr)

    def test_which_directory_stands_for_each_certificate(self):
        module = script_module()
        for overlay in ["dev", "prod"]:
            with self.subTest(overlay=overlay):
                found = {o["metadata"]["name"]: module.certs_identity(o) for o in render(overlay) if o["kind"] == "Certificate"}
                expected = {f"mesh-{name}": name for name in MESH}
                expected.update({"roaming-ca": None, "gateway-public": "public"})
                self.assertEqual(found, expected)


class Placeholders(unittest.TestCase):
    def test_the_cloudnativepg_application_secret_has_its_keys_and_uri(self):
        secret = script_module().cnpg_app_secret(
            "pg-view", "roaming", {"database": "view", "owner": "view"}
        )
        self.assertEqual(
            secret["uri"].decode(), "postgresql://view:placeholder@pg-view-rw.roaming:5432/view"
        )
        self.assertLessEqual(
            {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass"}, set(secret)
        )
        defaults = script_module().cnpg_app_secret("pg", "ns", {})
        self.assertEqual(defaults["uri"].decode(), "postgresql://app:placeholder@pg-rw.ns:5432/app")

    def test_the_image_defaults_come_from_the_dockerfile(self):
        env, entrypoint, cmd = script_module().image_defaults(ROOT.parent / "Dockerfile")
        self.assertEqual(os.path.basename(entrypoint[0]), "roaming")
        self.assertEqual(env.get(PREFIX + "DATA_DIR"), "/tmp/roaming")
        self.assertEqual(cmd, ["up"])


if __name__ == "__main__":
    unittest.main()
