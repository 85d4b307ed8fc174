#!/usr/bin/env python3
"""Writes the compile database clang-tidy reads for scripts/lint.sh.

It holds every tracked .cpp file of the project: the ones build/ compiles, with
their own commands (from build/compile_commands.json), and the ones build/ does
not compile on this machine, with the command of a file like them:
  fuzz/*.cpp          (built only by scripts/ci-extra.sh, with clang) as a
                      models/ file, which links the same libraries;
  kernels/neon/*.cpp  (built only for aarch64) as a kernels/ file, for
                      --target=aarch64-linux-gnu, x86 -m flags dropped.
usage: lint_database.py ROOT BUILD_DB OUT_DIR   (prints the files, one a line)
"""
import json
import os
import shlex
import subprocess
import sys


def main():
    root, build_db, out_dir = sys.argv[1:4]
    tracked = subprocess.run(["git", "-C", root, "ls-files", "*.cpp"], check=True,
                             capture_output=True, text=True).stdout.split()
    tracked = [os.path.join(root, f) for f in tracked]
    with open(build_db) as f:
        built = {e["file"]: e for e in json.load(f)}

    def like(prefix):
        for path in sorted(built):
            if path.startswith(os.path.join(root, prefix)):
                return built[path]
        sys.exit(f"lint_database.py: no compiled file under {prefix} to copy flags from")

    entries = []
    for path in tracked:
        if path in built:
            entries.append(built[path])
            continue
        rel = os.path.relpath(path, root)
        if rel.startswith("fuzz/"):
            model = like("models/")
            # The value does not matter to clang-tidy; the harnesses need the macro.
            extra = ['-DNIBBLE_DATA_DIR="data"']
        elif rel.startswith("kernels/neon/"):
            model = like("kernels/")
            # GCC's "#pragma GCC target" (the dotprod file) is unknown to clang.
            extra = ["--target=aarch64-linux-gnu", "-march=armv8.2-a+dotprod",
                     "-Wno-unknown-pragmas"]
        else:
            sys.exit(f"lint_database.py: {rel} is tracked but has no compile command")
        args = shlex.split(model["command"])
        # Keep the compiler, the flags and the include paths; replace the source,
        # the output and any x86-only flags.
        kept = []
        skip = False
        for a in args:
            if skip:
                skip = False
                continue
            if a in ("-o", "-c"):
                skip = a == "-o"
                continue
            if a == model["file"] or (rel.startswith("kernels/neon/") and a.startswith("-m")):
                continue
            kept.append(a)
        kept += extra  # after -Wall, which would turn the warnings back on
        entries.append({"directory": model["directory"], "file": path,
                        "command": shlex.join(kept + ["-c", path])})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "compile_commands.json"), "w") as f:
        json.dump(entries, f, indent=1)
    for e in entries:
        print(e["file"])


if __name__ == "__main__":
    main()
