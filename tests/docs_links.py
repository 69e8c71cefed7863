"""Checks the relative links of every Markdown file in the source tree (the docs_links test).

    /usr/bin/python3 tests/docs_links.py SOURCE_DIR

A link [text](target) whose target is not a URL must name a file or directory that exists,
inside the source tree, and a `#anchor` must be a heading of the file it names (GitHub's
anchors: lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for repeats). Code
blocks and code spans are not links. Prints one line per broken link and exits 1 if there is
any, so a moved section or a renamed file breaks the build rather than the reader.
"""
import os
import re
import sys

SKIP_DIRS = {"build", "demo", "__pycache__"}
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def markdown_files(root):
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS)
        for f in sorted(files):
            if f.endswith(".md"):
                yield os.path.join(d, f)


def prose_lines(path):
    """(line number, text) outside fenced code blocks."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                yield n, line.rstrip("\n")


def slug(heading):
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, out = {}, set()
        for _, line in prose_lines(path):
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            s = slug(m.group(1))
            k = seen.get(s, 0)
            seen[s] = k + 1
            out.add(s if k == 0 else f"{s}-{k}")
        cache[path] = out
    return cache[path]


def check(root):
    root = os.path.realpath(root)
    bad = []
    for md in markdown_files(root):
        rel = os.path.relpath(md, root)
        for n, line in prose_lines(md):
            line = CODE_SPAN.sub(lambda m: m.group(1) + "x" * len(m.group(2)) + m.group(1)
                                 if "](" in m.group(2) else m.group(0), line)
            for m in LINK.finditer(line):
                target = m.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = os.path.realpath(os.path.join(os.path.dirname(md), path)) if path else md
                where = f"{rel}:{n}: {target}"
                if dest != root and not dest.startswith(root + os.sep):
                    bad.append(f"{where}: points outside the source tree")
                elif not os.path.exists(dest):
                    bad.append(f"{where}: no such file")
                elif anchor and os.path.isfile(dest) and dest.endswith(".md") and anchor not in anchors(dest):
                    bad.append(f"{where}: no heading #{anchor} in {os.path.relpath(dest, root)}")
    return bad


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: docs_links.py SOURCE_DIR")
    bad = check(sys.argv[1])
    for b in bad:
        print(b)
    print(f"{'ok' if not bad else 'FAIL'} - relative Markdown links ({len(bad)} broken)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
