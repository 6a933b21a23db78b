#!/usr/bin/env python3
"""Turns the ```cpp blocks of one Markdown file into one C++ translation unit.

Usage: extract.py <file.md> <out.cpp> <label>

The rules (also in tests/docs/README.md):

* Every ```cpp block is compiled. Block k goes into its own namespace, doc_block_k, so
  that blocks of one file can reuse names (x, W, loss) without clashing.
* `#include` lines are moved to the top of the file (a blank line stays in their place,
  so line numbers still match).
* A block with `int main()` is a program: its main is renamed doc_main_<line>, and
  the generated main() calls them all in order. The test fails if one returns non-zero
  or throws.
* `<!-- doc-test: continue -->` on a line before a block puts it in the previous
  block's namespace: a tutorial can build a model over several blocks.
* `<!-- doc-test: requires ctgraph/optim.hpp -->` compiles the block (and its includes)
  only when `__has_include(<ctgraph/optim.hpp>)`.
* `<!-- doc-test: skip -->` leaves a block out. Use it only for code that cannot compile
  (none of the current docs need it).

`#line` directives point compiler errors at the Markdown file and line.
"""
import re
import sys
from pathlib import Path

FENCE_OPEN = re.compile(r"^\s*```cpp\s*$")
FENCE_CLOSE = re.compile(r"^\s*```\s*$")
MARKER = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
INCLUDE = re.compile(r"^\s*#\s*include\b")
MAIN = re.compile(r"\bint\s+main\s*\(\s*\)")


def blocks(text):
    """Yields (first line number, lines, markers) for each ```cpp block."""
    lines = text.splitlines()
    pending = []
    i = 0
    while i < len(lines):
        m = MARKER.search(lines[i])
        if m:
            pending.append(m.group(1))
        if FENCE_OPEN.match(lines[i]):
            start = i + 1
            j = start
            while j < len(lines) and not FENCE_CLOSE.match(lines[j]):
                j += 1
            yield start + 1, lines[start:j], pending
            pending = []
            i = j
        elif lines[i].strip() and not m:
            pending = []  # a marker applies to the next block only if nothing but blank lines follow it
        i += 1


def main():
    md, out, label = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3]
    includes, bodies, mains = [], [], []
    ns = 0
    for first, lines, markers in blocks(md.read_text()):
        if "skip" in markers:
            continue
        req = [m.split(None, 1)[1] for m in markers if m.startswith("requires ")]
        cont = "continue" in markers and ns > 0
        if not cont:
            ns += 1
        guard_open = "".join(f"#if __has_include(<{h}>)\n" for h in req)
        guard_close = "#endif\n" * len(req)
        body = []
        has_main = False
        for line in lines:
            if INCLUDE.match(line):
                includes.append(guard_open + line.strip() + "\n" + guard_close)
                body.append("")
            else:
                if MAIN.search(line):
                    has_main = True
                    line = MAIN.sub(f"int doc_main_{first}()", line)
                body.append(line)
        text = guard_open + f"namespace doc_block_{ns} {{\n#line {first} \"{md}\"\n"
        text += "\n".join(body) + f"\n}}  // namespace doc_block_{ns}\n" + guard_close
        bodies.append(text)
        if has_main:
            mains.append((guard_open, guard_close, ns, first))
    seen, unique = set(), []
    for inc in includes:
        if inc not in seen:
            seen.add(inc)
            unique.append(inc)
    src = [f"// Generated from {md} by tests/docs/extract.py: do not edit.\n"]
    src += ["#include <cstdio>\n#include <exception>\n"] + unique
    src += bodies
    src.append("#line 1 \"doc_main.cpp\"\nint main() {\n  int failed = 0, ran = 0;\n")
    for guard_open, guard_close, ns, first in mains:
        src.append(guard_open)
        src.append(f"  ++ran;\n  try {{\n    if (int rc = doc_block_{ns}::doc_main_{first}(); rc != 0) {{\n"
                   f"      std::printf(\"{label}: block at line {first} returned %d\\n\", rc);\n      ++failed;\n    }}\n"
                   f"  }} catch (const std::exception& e) {{\n"
                   f"    std::printf(\"{label}: block at line {first} threw: %s\\n\", e.what());\n    ++failed;\n  }}\n")
        src.append(guard_close)
    src.append(f"  std::printf(\"{label}: %d program(s) ran, %d failed\\n\", ran, failed);\n  return failed;\n}}\n")
    new = "".join(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != new:
        out.write_text(new)


if __name__ == "__main__":
    main()
