"""Run every benchmark and rewrite BENCHMARKS.md with their figures, machine and versions.

Usage: python benchmarks/run_all.py [NAME ...]   (NAME: writer, torch, ...; default: all)

Each benchmark is a script ``benchmarks/bench_<name>.py`` that prints a markdown section.
Sections of benchmarks not run this time are kept from the existing BENCHMARKS.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "BENCHMARKS.md"
PACKAGES = (
    "vizdebug",
    "numpy",
    "protobuf",
    "tensorboard",
    "tensorboardX",
    "torch",
    "tensorflow-cpu",
    "keras",
    "visdom",
    "textual",
)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def existing_sections() -> dict[str, str]:
    if not OUT.exists():
        return {}
    text = OUT.read_text()
    parts = re.split(r"^## (\w+)\n", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def main() -> None:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    chosen = sys.argv[1:] or available
    unknown = set(chosen) - set(available)
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {available}")
    sections = existing_sections()
    stamp = f"{datetime.date.today()} on {machine()}; {versions()}"
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, str(HERE / f"bench_{name}.py")],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if out.returncode != 0:
            sys.exit(f"benchmark {name} failed:\n{out.stderr[-3000:]}")
        sections[name] = f"_Measured {stamp}._\n\n{out.stdout.strip()}"
    body = [
        "# Benchmarks",
        "",
        "Regenerate with `make bench` (or `python benchmarks/run_all.py NAME`). Timings are",
        "from shared, noisy machines: compare the ratios within one run, not across runs.",
        "",
    ]
    for name in sorted(sections):
        body += [f"## {name}", "", sections[name], ""]
    OUT.write_text("\n".join(body))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
