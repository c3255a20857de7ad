#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Small, checked edits of existing kernel files for the patch series.

Every edit must find its anchor exactly where expected; otherwise it fails
loudly instead of producing a patch that silently lands in the wrong place.

  kedit.py FILE before REGEX TEXT    insert TEXT before the first matching line
  kedit.py FILE after REGEX TEXT     insert TEXT after the last matching line
  kedit.py FILE sub REGEX REPL       substitute in the one matching line
  kedit.py FILE maintainers TEXT     insert a MAINTAINERS entry in sorted order
"""
import re
import sys


def fail(msg):
    sys.exit(f"kedit: {sys.argv[1]}: {msg}")


def matching(lines, regex):
    idx = [i for i, line in enumerate(lines) if re.search(regex, line)]
    if not idx:
        fail(f"no line matches {regex!r}")
    return idx


def text_lines(text):
    return [line + "\n" for line in text.split("\n")]


def main():
    path, op, *args = sys.argv[1:]
    with open(path) as f:
        lines = f.readlines()

    if op == "before":
        i = matching(lines, args[0])[0]
        lines[i:i] = text_lines(args[1])
    elif op == "after":
        i = matching(lines, args[0])[-1] + 1
        lines[i:i] = text_lines(args[1])
    elif op == "sub":
        idx = matching(lines, args[0])
        if len(idx) != 1:
            fail(f"{args[0]!r} matches {len(idx)} lines, expected 1")
        lines[idx[0]] = re.sub(args[0], args[1], lines[idx[0]])
    elif op == "maintainers":
        entry = text_lines(args[0])
        title = entry[0].strip()
        # Entries are a title line followed by "X:\t" lines, after the
        # "Maintainers List" heading, sorted by title (with a few strays):
        # go behind the entry with the greatest title below ours.
        start = matching(lines, r"^Maintainers List")[0]
        titles = [i for i in range(start, len(lines) - 1)
                  if re.match(r"^[0-9A-Z]", lines[i])
                  and not re.match(r"^[A-Z]:\t", lines[i])
                  and re.match(r"^[A-Z]:\t", lines[i + 1])]
        below = [i for i in titles if lines[i].strip() < title]
        if not below:
            fail("no place for the MAINTAINERS entry")
        prev = max(below, key=lambda i: lines[i].strip())
        following = [i for i in titles if i > prev]
        at = following[0] if following else len(lines)
        lines[at:at] = entry + ["\n"]
    else:
        fail(f"unknown operation {op}")

    with open(path, "w") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
