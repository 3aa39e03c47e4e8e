#!/usr/bin/env python
"""Mutation check of the TP tests: each known way of getting Traces Propagation wrong must
make ``tests/model/test_tp_reference.py`` or ``tests/model/test_tp.py`` fail.

The repository's files (tracked and untracked-but-not-ignored, as ``git ls-files`` lists
them) are copied to a temporary directory; each mutation is an exact text substitution
applied there, one at a time, and pytest runs in the copy with the copy first on the path.
The checkout itself is never written to. A pytest plugin records where ``model`` was
imported from, and every run is checked to have used the copy.

    .venv/bin/python scripts/mutate-tp.py            # exit 0 only if every mutant is caught
    .venv/bin/python scripts/mutate-tp.py --all      # ... and list every test that fails

A mutant counts as caught only when pytest reports failing tests (exit status 1), not when
it cannot collect or crashes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ["tests/model/test_tp_reference.py", "tests/model/test_tp.py"]

# name, file, original text, mutated text (each original must occur exactly once)
MUTATIONS: list[tuple[str, str, str, str]] = [
    ("gradient-ascent", "model/rules/tp.py",
     "self.accumulate({self.net.w_in: d[0], self.net.w_rec: d[1]}, frames=n)",
     "self.accumulate({self.net.w_in: -d[0], self.net.w_rec: -d[1]}, frames=n)"),
    ("inverted-targets", "model/rules/tp.py",
     "    return torch.softmax(-d, dim=1)\n",
     "    return 1.0 - torch.softmax(-d, dim=1)\n"),
    ("shuffled-targets", "model/rules/tp.py",
     "    return torch.softmax(-d, dim=1)\n",
     "    return torch.softmax(-d, dim=1).roll(1, dims=1)\n"),
    ("recurrent-presyn-current-spikes", "model/rules/tp.py",
     "self._pending.add(delta, x, s_prev)",
     "self._pending.add(delta, x, s)"),
    ("surrogate-without-pi", "model/neurons.py",
     "return k / (1.0 + (math.pi * x) ** 2)",
     "return k / (1.0 + x ** 2)"),
    ("label-path-without-recurrence", "model/rules/tp.py",
     "lab_cur = self.lab_drive + self.lab.lif.s @ self.R.T",
     "lab_cur = self.lab_drive"),
]

PLUGIN = '''\
import os, sys


def pytest_sessionfinish(session, exitstatus):
    mods = {n: getattr(sys.modules.get(n), "__file__", None)
            for n in ("tracekws.model", "tracekws.model.rules.tp", "tracekws.model.neurons")}
    with open(os.environ["TP_MUTATION_REPORT"], "w") as f:
        f.write("\\n".join(f"{n} {p}" for n, p in mods.items()) + "\\n")
'''


def copy_repo(dest: Path) -> None:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the work tree is skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(copy: Path, aux: Path, timeout: float, stop_first: bool = True
              ) -> tuple[int, str, dict[str, str]]:
    report = aux / "imported.txt"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(aux)]),
           "TP_MUTATION_REPORT": str(report), "OMP_NUM_THREADS": "1",
           "TORCH_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", *(["-x"] if stop_first else []), "-q",
           "-p", "no:cacheprovider", "-p", "tp_mutation_guard", *TESTS]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = -1, f"timed out after {timeout} s\n{e.stdout or ''}"
    imported = {}
    if report.exists():
        for line in report.read_text().splitlines():
            name, path = line.split(" ", 1)
            imported[name] = path
    return rc, out, imported


def check_imported(copy: Path, imported: dict[str, str]) -> None:
    root = str(copy.resolve()) + os.sep
    for name in ("tracekws.model", "tracekws.model.rules.tp", "tracekws.model.neurons"):
        path = imported.get(name)
        if not path or not str(Path(path).resolve()).startswith(root):
            sys.exit(f"pytest imported {name} from {path!r}, not from the copy {copy}")


def failed_tests(out: str) -> str:
    names = [ln.split()[1] for ln in out.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    return ", ".join(n.split(" - ")[0] for n in names) or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    ap.add_argument("-v", "--verbose", action="store_true", help="print pytest's output")
    ap.add_argument("--all", action="store_true",
                    help="run every test on each mutant (no -x) and list all that fail")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mutate-tp-") as tmp:
        copy, aux = Path(tmp) / "repo", Path(tmp) / "aux"
        copy.mkdir()
        aux.mkdir()
        (aux / "tp_mutation_guard.py").write_text(PLUGIN)
        copy_repo(copy)
        originals = {f: (copy / f).read_text() for f in {m[1] for m in MUTATIONS}}
        # every mutation's target must be in today's source, exactly once
        for name, f, old, _ in MUTATIONS:
            n = originals[f].count(old)
            if n != 1:
                sys.exit(f"{name}: expected the text once in {f}, found it {n} times: {old!r}")

        rc, out, imported = run_tests(copy, aux, args.timeout)
        check_imported(copy, imported)
        print(f"copy: {copy}; model imported from {imported['tracekws.model']}")
        if rc != 0:
            print(out)
            print(f"unmutated copy: tests FAIL (pytest exit {rc}); nothing to compare against")
            return 2
        print(f"{'unmutated':34s} tests pass")

        missed = []
        for name, f, old, new in MUTATIONS:
            (copy / f).write_text(originals[f].replace(old, new, 1))
            try:
                rc, out, imported = run_tests(copy, aux, args.timeout, not args.all)
            finally:
                (copy / f).write_text(originals[f])
            check_imported(copy, imported)
            if args.verbose:
                print(out)
            if rc == 1:
                print(f"{name:34s} caught       by {failed_tests(out)}")
            else:
                why = "tests pass" if rc == 0 else f"pytest exit {rc}, not a test failure"
                print(f"{name:34s} NOT CAUGHT   ({why})")
                missed.append(name)
        n = len(MUTATIONS)
        print(f"summary: {n - len(missed)}/{n} mutations caught"
              + (f"; missed: {', '.join(missed)}" if missed else ""))
        return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
