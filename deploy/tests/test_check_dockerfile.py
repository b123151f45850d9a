"""deploy/check_dockerfile.py: the Dockerfile copies what each build step reads.

Run: python3 -m unittest discover -s deploy/tests   (no cargo: the files each
step reads are given here, shaped like the real ones; .ci/run runs the check
itself on what cargo reports). The Dockerfile before issue 30 cooked without
vendor/sea-orm, the [patch.crates-io] path the recipe does not carry: the
check must refuse it, and pass the repository's Dockerfile.
"""

import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import check_dockerfile as check  # noqa: E402

# What each step reads, as required_files() computes it for the repository
# (a few files of each kind).
PREPARE = {
    "Cargo.toml", "Cargo.lock", ".cargo/config.toml",
    "services/roaming/Cargo.toml", "services/roaming/src/main.rs", "services/roaming/src/lib.rs",
    "services/gateway/Cargo.toml", "services/gateway/build.rs", "services/gateway/src/lib.rs",
    "proto/Cargo.toml", "proto/build.rs", "proto/src/lib.rs",
    "vendor/sea-orm/Cargo.toml",
}
COOK = {"vendor/sea-orm/Cargo.toml", "vendor/sea-orm/src/lib.rs", "vendor/sea-orm/src/database/mod.rs"}
BUILD = PREPARE | COOK | {
    "proto/roaming/reservation/v1/reservation.proto",
    "services/console/dist/index.html",
    "services/console/dist/assets/app-3NCP2ZJW.js",
    "services/roaming/src/host.rs",
}
REQUIRED = {"prepare": PREPARE, "cook": COOK, "build": BUILD}

# The builder stage as it was (commit cb2ff0d).
BEFORE = """\
# syntax=docker/dockerfile:1
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /src
RUN cargo install cargo-chef --locked --version 0.1.78

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
COPY --from=planner /src/recipe.json recipe.json
# Only the manifests' dependencies: this layer changes when Cargo.lock does.
RUN cargo chef cook --profile production --locked --recipe-path recipe.json \\
    -p services-roaming -p services-reservation -p services-payment \\
    -p services-rental -p services-parking -p services-view
COPY . .
RUN cargo build --profile production --locked \\
    -p services-roaming -p services-reservation -p services-payment \\
    -p services-rental -p services-parking -p services-view \\
 && mkdir -p /out \\
 && cp target/production/roaming target/production/reservation /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/ /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/roaming"]
"""

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


class Dockerfile(unittest.TestCase):
    def test_the_dockerfile_before_issue_30_fails(self):
        found = check.problems(BEFORE, DOCKERIGNORE, REQUIRED)
        self.assertEqual(len(found), 1, found)
        self.assertIn("cargo chef cook", found[0])
        self.assertIn("vendor/sea-orm/", found[0])
        self.assertIn("not copied before it", found[0])

    def test_the_repositorys_dockerfile_passes(self):
        self.assertEqual(check.problems(DOCKERFILE, DOCKERIGNORE, REQUIRED), [])

    def test_it_ships_one_stripped_binary(self):
        runs = [rest for _, word, rest in check.instructions(DOCKERFILE) if word == "RUN" and check.step_kind(rest) == "build"]
        self.assertEqual(len(runs), 1)
        self.assertEqual(check.build_selection(runs[0]), (["services-roaming"], ["roaming"]))
        self.assertIn("--profile production", runs[0])
        cargo = (ROOT / "Cargo.toml").read_text()
        production = cargo[cargo.index("[profile.production]"):]
        production = production[:production.find("\n[", 1)]
        self.assertRegex(production, r"(?m)^strip = (true|\"symbols\")$")

    def test_each_way_to_miss_a_file_fails(self):
        cases = {
            # The patch path dropped from the context.
            ".dockerignore drops vendor/": (DOCKERFILE, DOCKERIGNORE + "vendor/\n"),
            ".dockerignore drops the console": (DOCKERFILE, DOCKERIGNORE + "**/dist\n"),
            ".dockerignore drops a build script": (DOCKERFILE, DOCKERIGNORE + "**/build.rs\n"),
            "copied after the cook": (DOCKERFILE.replace("COPY vendor/ vendor/\n", "").replace(
                "COPY . .\n# The production", "COPY vendor/ vendor/\nCOPY . .\n# The production"), DOCKERIGNORE),
            "copied to the wrong place": (DOCKERFILE.replace("COPY vendor/ vendor/", "COPY vendor/ /vendor/"), DOCKERIGNORE),
            "copied as a directory into itself": (DOCKERFILE.replace("COPY vendor/ vendor/", "COPY vendor/sea-orm vendor/"), DOCKERIGNORE),
            "only the manifests before the build": (DOCKERFILE.replace(
                "COPY . .\n# The production", "COPY Cargo.toml Cargo.lock ./\n# The production"), DOCKERIGNORE),
            "no build at all": ("FROM rust:1.95 AS chef\nCOPY . .\n", DOCKERIGNORE),
        }
        for what, (dockerfile, dockerignore) in cases.items():
            with self.subTest(what):
                self.assertNotEqual(check.problems(dockerfile, dockerignore, REQUIRED), [], what)

    def test_what_counts_as_copied(self):
        stages = """\
FROM rust:1.95 AS base
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY ["vendor", "vendor"]
COPY proto/ proto/
FROM base AS build
WORKDIR /src
COPY --from=base /src/proto /src/proto
COPY .cargo .cargo
COPY services services
RUN cargo build -p services-roaming
"""
        required = {"build": {"Cargo.toml", "Cargo.lock", "vendor/sea-orm/Cargo.toml", "proto/build.rs",
                              ".cargo/config.toml", "services/roaming/src/main.rs"}}
        self.assertEqual(check.problems(stages, "", required), [])
        # A stage that does not start FROM the one with the files has none of them.
        self.assertNotEqual(check.problems(stages.replace("FROM base AS build", "FROM rust:1.95 AS build"), "", required), [])


class Dockerignore(unittest.TestCase):
    def test_dockers_matching(self):
        rules = check.ignore_rules(DOCKERIGNORE)
        cases = {
            "target/debug/roaming": "target/",
            "README.md": None,  # re-included by !README.md
            "ARCHITECTURE.md": "*.md",
            "vendor/sea-orm/README.md": None,  # *.md is the context's top level only
            "services/console/node_modules/x/index.js": "**/node_modules/",
            "data/seed.json": "data/",
            "services/roaming/x.db": "**/*.db",
            "deploy/nats/nats.conf": "deploy/",
            "services/console/dist/index.html": None,
            "vendor/sea-orm/src/lib.rs": None,
        }
        for path, pattern in cases.items():
            with self.subTest(path):
                self.assertEqual(check.ignored_by(rules, path), pattern)

    def test_patterns(self):
        self.assertTrue(check._pattern_regex("**/b").match("b"))
        self.assertTrue(check._pattern_regex("**/b").match("a/x/b"))
        self.assertFalse(check._pattern_regex("a/*").match("a/b/c"))
        self.assertTrue(check._pattern_regex("a/?.rs").match("a/b.rs"))
        self.assertTrue(check._pattern_regex("a/[bc].rs").match("a/c.rs"))


class BuildOutputs(unittest.TestCase):
    def test_dep_info(self):
        text = "/t/debug/roaming: /w/a.rs /w/with\\ space.rs /w/proto/roaming\n\n/w/a.rs:\n"
        self.assertEqual(check.dep_info_paths(text), ["/w/a.rs", "/w/with space.rs", "/w/proto/roaming"])

    def test_rerun_if_changed(self):
        out = "cargo:rerun-if-changed=roaming\ncargo::rerun-if-changed=../console/dist\ncargo:warning=x\n"
        self.assertEqual(check.rerun_paths(out), ["roaming", "../console/dist"])


if __name__ == "__main__":
    unittest.main()
