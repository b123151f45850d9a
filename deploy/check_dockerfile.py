#!/usr/bin/env python3
"""The Dockerfile copies every file a build step reads before that step.

Usage: python3 deploy/check_dockerfile.py   (.ci/run; needs cargo. It builds
what the Dockerfile's `cargo build` builds, in the debug profile, to read the
build's dep-info: a no-op when that build is fresh.)

What each step reads, relative to the repository (the build context):

- `cargo chef prepare`: the workspace's manifests (root, members, path
  packages such as the `[patch.crates-io]` ones), Cargo.lock,
  .cargo/config.toml, and each member's lib, bin and build-script files
  (cargo metadata infers the targets from them).
- `cargo chef cook`: the recipe carries the members' manifests (with dummy
  sources) but not the path packages that are no members: their manifests
  and the sources the build compiles of them.
- `cargo build`: all of the above, every source file the compiler read for
  the shipped binary (cargo's dep-info `target/debug/<bin>.d`: include_str!,
  include_bytes! and modules included) and every build script's inputs
  (its `cargo:rerun-if-changed` lines, directories expanded to their files).

The Dockerfile is modelled stage by stage (FROM <stage> inherits, COPY from
the context or --from another stage, WORKDIR): a file counts as present
for a RUN if a COPY before it put it at WORKDIR/<its path>, and
.dockerignore did not drop it from the context (Docker's rules: the last
matching pattern wins, a pattern matching a parent directory matches the
files under it, `!` re-includes). No image is built: there is no docker
engine on these machines.
"""

import argparse
import json
import os
import pathlib
import posixpath
import re
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- .dockerignore ----------------------------------------------------------


def _pattern_regex(pattern):
    """Docker's (moby patternmatcher) pattern: `*` and `?` within one path
    element, `**` any number of elements, `[...]` a class, `\\` escapes."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i:i + 2] == "**":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    # `**/` also matches no directory at all.
                    out += "(?:.*/)?"
                    i += 1
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:end].replace("\\", "\\\\") + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def ignore_rules(text):
    """(regex, excludes, pattern as written) for each line of a .dockerignore."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line if exclude else line[1:].strip()
        pattern = posixpath.normpath(pattern).lstrip("/")
        if pattern in (".", ""):
            continue
        rules.append((_pattern_regex(pattern), exclude, line))
    return rules


def ignored_by(rules, path):
    """The pattern that drops `path` from the context, or None if it stays."""
    parts = path.split("/")
    verdict = None
    for regex, exclude, written in rules:
        matched = bool(regex.match(path)) or any(
            regex.match("/".join(parts[:n])) for n in range(1, len(parts))
        )
        if matched:
            verdict = written if exclude else None
    return verdict


# --- the Dockerfile ---------------------------------------------------------


def instructions(text):
    """(line number, INSTRUCTION, arguments) with continuations joined."""
    out, buffer, start = [], "", None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buffer and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if start is None:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        word, _, rest = buffer.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buffer, start = "", None
    return out


def copy_arguments(rest):
    """(flags, sources, destination) of a COPY/ADD, exec (JSON) form or not."""
    rest = rest.strip()
    flags = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.strip()
    if rest.startswith("["):
        words = json.loads(rest)
    else:
        words = shlex.split(rest)
    return flags, words[:-1], words[-1]


def step_kind(command):
    if re.search(r"\bcargo\s+chef\s+prepare\b", command):
        return "prepare"
    if re.search(r"\bcargo\s+chef\s+cook\b", command):
        return "cook"
    if re.search(r"\bcargo\s+(?:\+\S+\s+)?build\b", command):
        return "build"
    return None


def build_selection(command):
    """(packages, bins) a `cargo build` command names (-p/--package, --bin)."""
    match = re.search(r"\bcargo\s+(?:\+\S+\s+)?build\b(.*?)(?:&&|;|\|\||$)", command)
    words = shlex.split(match.group(1)) if match else []
    packages, bins = [], []
    for i, word in enumerate(words):
        for flags, into in ((("-p", "--package"), packages), (("--bin",), bins)):
            for flag in flags:
                if word == flag and i + 1 < len(words):
                    into.append(words[i + 1])
                elif word.startswith(flag + "="):
                    into.append(word[len(flag) + 1:])
    return packages, bins


def _join(base, path):
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))


def _placed(source, files, destination, several):
    """Where a context COPY source puts each of `files` (repository paths):
    {image path: file}. A directory's contents go under the destination; a
    file goes to the destination, or into it if it ends with / or there are
    several sources."""
    source = posixpath.normpath(source).lstrip("/")
    source = "" if source == "." else source
    into_dir = destination.endswith("/") or several
    placed = {}
    has_glob = any(c in source for c in "*?[")
    for f in files:
        if has_glob:
            # A glob names entries of its directory: files or directories.
            parts, pattern = f.split("/"), source.split("/")
            if len(parts) < len(pattern) or not all(
                _pattern_regex(p).match(q) for p, q in zip(pattern, parts)
            ):
                continue
            entry = "/".join(parts[:len(pattern)])
            rest = "/".join(parts[len(pattern):])
            placed[_join(destination, rest) if rest else _join(destination, posixpath.basename(entry))] = f
        elif source == "":
            placed[_join(destination, f)] = f
        elif f == source:
            placed[_join(destination, posixpath.basename(f)) if into_dir else destination] = f
        elif f.startswith(source + "/"):
            placed[_join(destination, f[len(source) + 1:])] = f
    return placed


def problems(dockerfile, dockerignore, required):
    """Every way the Dockerfile misses a file a step reads, as sentences.

    `required` maps a step kind ("prepare", "cook", "build") to the repository
    paths it reads. A step kind the Dockerfile lacks is not an error, except
    `build`: the image must build something."""
    rules = ignore_rules(dockerignore)
    every = set().union(*required.values()) if required else set()
    stages, found, seen = {}, [], set()
    fs, workdir, stage = {}, "/", None
    for number, word, rest in instructions(dockerfile):
        if word == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--")]
            base = parts[0] if parts else ""
            if stage is not None:
                stages[stage] = (fs, workdir)
            stage = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else f"#{len(stages)}"
            fs, workdir = (dict(stages[base][0]), stages[base][1]) if base in stages else ({}, "/")
        elif word == "WORKDIR":
            workdir = _join(workdir, rest.strip())
        elif word in ("COPY", "ADD"):
            flags, sources, destination = copy_arguments(rest)
            target = _join(workdir, destination)
            if destination.endswith("/"):
                target += "/"
            if "from" in flags:
                source_fs = stages.get(flags["from"], ({}, "/"))[0]
                for src in sources:
                    src = _join("/", src)
                    for path, f in source_fs.items():
                        if path == src:
                            fs[_join(target, posixpath.basename(path)) if target.endswith("/") else target] = f
                        elif path.startswith(src.rstrip("/") + "/"):
                            fs[_join(target, path[len(src.rstrip("/")) + 1:])] = f
            else:
                for src in sources:
                    placed = _placed(src, every, target, len(sources) > 1)
                    for path, f in placed.items():
                        if ignored_by(rules, f) is None:
                            fs[path] = f
        elif word == "RUN":
            kind = step_kind(rest)
            if kind is None:
                continue
            seen.add(kind)
            present = {f for path, f in fs.items() if path == _join(workdir, f)}
            # One sentence per directory (two levels) and reason, not per file.
            groups = {}
            for f in sorted(required.get(kind, set()) - present):
                pattern = ignored_by(rules, f)
                why = f"excluded by .dockerignore ({pattern})" if pattern else "not copied before it"
                groups.setdefault(("/".join(f.split("/")[:2]), why), []).append(f)
            for (group, why), files in groups.items():
                more = f" and {len(files) - 1} more under {group}/" if len(files) > 1 else ""
                found.append(f"line {number}, stage {stage}, {LABELS[kind]}: {files[0]}{more} {why}")
    if "build" not in seen:
        found.append("no RUN cargo build: the image builds nothing")
    return found


# --- what the build reads ---------------------------------------------------


def dep_info_paths(text):
    """The prerequisites of every rule in a make-style dep-info file."""
    paths = []
    for line in text.splitlines():
        # `target: a b\ c` — the colon after the (escaped) target.
        match = re.match(r"^((?:\\.|[^:\\])+|[A-Za-z]:(?:\\.|[^:\\])+):(?:\s|$)(.*)$", line)
        if not match:
            continue
        for word in re.findall(r"(?:\\.|[^\s\\])+", match.group(2)):
            paths.append(re.sub(r"\\(.)", r"\1", word))
    return paths


def rerun_paths(output):
    """`cargo:rerun-if-changed=PATH` (and `cargo::`) lines of a build script's output."""
    return [m.group(1).strip() for m in re.finditer(r"^cargo::?rerun-if-changed=(.*)$", output, re.M)]


def cargo(*args):
    return subprocess.run(["cargo", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {f for f in out.split("\0") if f}


def required_files(packages, bins):
    """What each step reads for building `bins` of `packages` (see the module's doc)."""
    meta = json.loads(cargo("metadata", "--format-version", "1", "--locked"))
    root = pathlib.Path(meta["workspace_root"])
    target_dir = pathlib.Path(meta["target_directory"])
    members = set(meta["workspace_members"])
    local = [p for p in meta["packages"] if p["source"] is None]
    tracked = tracked_files()

    def relative(path, base=root):
        path = pathlib.Path(base, path).resolve()
        if target_dir in path.parents or root not in path.parents:
            return None
        return path.relative_to(root).as_posix()

    def files_under(path):
        if path in tracked:
            return {path}
        return {f for f in tracked if f.startswith(path.rstrip("/") + "/")}

    manifests = {"Cargo.toml", "Cargo.lock"} | ({".cargo/config.toml"} & tracked)
    targets = set()
    outside = {}  # non-member path packages: directory -> name
    for p in local:
        manifest = relative(p["manifest_path"])
        manifests.add(manifest)
        if p["id"] in members:
            for t in p["targets"]:
                if set(t["kind"]) & {"lib", "rlib", "proc-macro", "bin", "custom-build"}:
                    targets.add(relative(t["src_path"]))
        else:
            outside[posixpath.dirname(manifest)] = p["name"]

    # The shipped binaries' dep-info and the build scripts' inputs.
    args = ["build", "--locked", "--message-format=json-render-diagnostics"]
    for p in packages:
        args += ["-p", p]
    for b in bins:
        args += ["--bin", b]
    read = set()
    manifest_dirs = {p["id"]: pathlib.Path(p["manifest_path"]).parent for p in meta["packages"]}
    executables = []
    for line in cargo(*args).splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            executables.append(message["executable"])
        elif message.get("reason") == "build-script-executed" and message["package_id"] in manifest_dirs:
            output = pathlib.Path(message["out_dir"]).parent / "output"
            if output.is_file():
                for path in rerun_paths(output.read_text()):
                    rel = relative(path, manifest_dirs[message["package_id"]])
                    if rel is not None:
                        read |= files_under(rel) or {rel}
    if not executables:
        raise SystemExit(f"cargo {' '.join(args)} built no binary")
    for executable in executables:
        sources = set()
        for path in dep_info_paths(pathlib.Path(executable).with_suffix(".d").read_text()):
            rel = relative(path)
            if rel is not None:
                # A build script's rerun-if-changed directory stands for its files.
                sources |= files_under(rel) or {rel}
        if not sources:
            # Another checkout sharing CARGO_TARGET_DIR rewrote it meanwhile?
            raise SystemExit(f"{executable}.d names no file of {root}")
        read |= sources

    prepare = manifests | targets
    cook = {m for m in manifests if posixpath.dirname(m) in outside}
    cook |= {f for f in read for d in outside if f.startswith(d + "/")}
    build = prepare | cook | read
    return {"prepare": prepare, "cook": cook, "build": build}


LABELS = {"prepare": "cargo chef prepare", "cook": "cargo chef cook", "build": "cargo build"}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dockerfile", default=str(ROOT / "Dockerfile"))
    parser.add_argument("--dockerignore", default=str(ROOT / ".dockerignore"))
    args = parser.parse_args(argv)
    dockerfile = pathlib.Path(args.dockerfile).read_text()
    ignore = pathlib.Path(args.dockerignore)
    dockerignore = ignore.read_text() if ignore.is_file() else ""
    runs = [rest for _, word, rest in instructions(dockerfile) if word == "RUN" and step_kind(rest) == "build"]
    if not runs:
        print(f"{args.dockerfile}: no RUN cargo build", file=sys.stderr)
        return 1
    packages, bins = build_selection(runs[-1])
    required = required_files(packages, bins)
    for kind, label in LABELS.items():
        print(f"{label}: reads {len(required[kind])} files of the repository")
    found = problems(dockerfile, dockerignore, required)
    for line in found:
        print(f"{args.dockerfile}: {line}", file=sys.stderr)
    if not found:
        selection = " ".join([f"-p {p}" for p in packages] + [f"--bin {b}" for b in bins])
        print(f"{args.dockerfile}: every file is copied before the step that reads it (cargo build {selection})")
    return 1 if found else 0


if __name__ == "__main__":
    os.environ.setdefault("CARGO_TERM_COLOR", "never")
    sys.exit(main(sys.argv[1:]))
