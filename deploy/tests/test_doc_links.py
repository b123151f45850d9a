"""Every relative link in the repository's Markdown resolves inside it.

Run: python3 -m unittest discover -s deploy/tests   (no dependencies). The
repository stands alone: a link to a file that is not in it (a design file
kept elsewhere, a page that was moved) is a dead end for a reader of a clean
checkout. Web links are not followed; links into a Markdown file's headings
(`FILE.md#heading`, `#heading`) must name a heading that exists. The last
test case proves each check notices a broken link.
"""

import pathlib
import re
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Not the project's own text, or not in the repository.
SKIP_DIRS = {".git", "target", "vendor", "node_modules", "data", ".roaming-distributed"}

LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def markdown_files(root):
    for path in sorted(root.rglob("*.md")):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts):
            yield path


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code blanked."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("``", line)


def targets(text):
    for number, line in prose_lines(text):
        for match in LINK.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    heading = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    heading = heading.strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path):
    seen = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(root):
    """`file:line: target (why)` for every relative link that does not resolve."""
    root = root.resolve()
    problems = []
    for path in markdown_files(root):
        for number, target in targets(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto:: not followed
            where = f"{path.relative_to(root)}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if file_part.startswith("/"):
                problems.append(f"{where} (absolute path)")
                continue
            if root != linked and root not in linked.parents:
                problems.append(f"{where} (outside the repository)")
                continue
            if not linked.exists():
                problems.append(f"{where} (no such file)")
                continue
            if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where} (no such heading)")
    return problems


class DocLinks(unittest.TestCase):
    def test_every_relative_link_resolves_inside_the_repository(self):
        self.assertTrue(list(markdown_files(ROOT)), "no Markdown found: wrong root?")
        problems = broken_links(ROOT)
        self.assertEqual(problems, [], "broken links:\n" + "\n".join(problems))

    def test_each_check_notices_a_broken_link(self):
        with tempfile.TemporaryDirectory() as tmp:
            repo = pathlib.Path(tmp) / "repo"
            (repo / "docs").mkdir(parents=True)
            (repo / "docs" / "B.md").write_text("# Part two\n\ntext\n", encoding="utf-8")
            (repo / "A.md").write_text(
                "\n".join(
                    [
                        "# Title",
                        "[fine](docs/B.md) [fine](docs/B.md#part-two) [fine](#title)",
                        "[web](https://example.com/x.md) `[code](nowhere.md)`",
                        "```",
                        "[fenced](nowhere.md)",
                        "```",
                        "[missing](docs/C.md)",
                        "[outside](../shared/DESIGN.md)",
                        "[absolute](/etc/hosts)",
                        "[heading](docs/B.md#part-three)",
                        "[ref]: docs/D.md",
                    ]
                ),
                encoding="utf-8",
            )
            problems = broken_links(repo)
        self.assertEqual(
            [p.split(": ", 1)[1] for p in problems],
            [
                "docs/C.md (no such file)",
                "../shared/DESIGN.md (outside the repository)",
                "/etc/hosts (absolute path)",
                "docs/B.md#part-three (no such heading)",
                "docs/D.md (no such file)",
            ],
        )


if __name__ == "__main__":
    unittest.main()
