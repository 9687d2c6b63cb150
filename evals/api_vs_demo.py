# The Python API on the embedded model with no sampling settings, against `ttscale demo` at the same N.
#
# Deliberately a plain script (no `if __name__ == "__main__":` guard): in-process vLLM engines must
# work from one. The API now takes the model folder's prompt template and sampling defaults
# (ttscale/models/arith-tiny/ttscale.json); "before" replays the old defaults (plain template, T=0.7,
# max_tokens 256) on the same engine. The demo runs afterwards in a subprocess on the same problems.
#
#   flock /tmp/vllm.lock .venv/bin/python evals/api_vs_demo.py [--n 16] [--limit 150]
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ttscale import TTScale
from ttscale.arith import test_set_path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n", type=int, default=16)
parser.add_argument("--limit", type=int, default=150)
args = parser.parse_args()

rows = [json.loads(line) for line in test_set_path().read_text().splitlines()][: args.limit]
problems = [r["problem"] for r in rows]


def accuracy(sols: list) -> float:
    return sum(s.answer == str(r["answer"]) for s, r in zip(sols, rows)) / len(rows)


figures: dict[str, dict] = {}
start = time.perf_counter()
tts = TTScale(backend="vllm", model="arith-tiny", budget=args.n, seed=0)  # no sampling settings
built = time.perf_counter()
for name, budget in (("api fixed", args.n), ("api adaptive", {"samples": args.n, "adaptive": True})):
    t0 = time.perf_counter()
    sols = tts.solve_many(problems, budget=budget)
    figures[name] = {"accuracy": accuracy(sols), "samples_per_question": sum(s.samples for s in sols) / len(sols),
                     "seconds": time.perf_counter() - t0}
old = TTScale(engine=tts.sampler.llm, budget=args.n, seed=0,
              sampling={"template": "plain", "temperature": 0.7, "max_tokens": 256})  # the API's defaults before
t0 = time.perf_counter()
sols = old.solve_many(problems)
figures["api fixed, old defaults"] = {"accuracy": accuracy(sols), "samples_per_question": sum(s.samples for s in sols) / len(sols),
                                      "seconds": time.perf_counter() - t0}
config = tts.sampler.config
tts.close()

with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "ttscale.cli.app", "demo", "--n", str(args.n), "--limit", str(args.limit), "--backend", "vllm",
           "--out", tmp, "--json"]
    demo = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    k = demo["k"].index(args.n)
    figures["demo majority"] = {"accuracy": demo["policies"]["majority"]["accuracy"][k], "samples_per_question": args.n,
                                "seconds": time.perf_counter() - t0}

print(f"embedded model, packaged test set, first {len(rows)} problems, N = {args.n}; API engine start {built - start:.1f}s")
print(f"API sampling config with no settings: template={config.template!r} temperature={config.temperature} max_tokens={config.max_tokens}")
print(f"{'run':28} {'accuracy':>9} {'samples/q':>10} {'seconds':>8}")
for name, f in figures.items():
    print(f"{name:28} {100 * f['accuracy']:8.1f}% {f['samples_per_question']:10.1f} {f['seconds']:8.1f}")
print(f"ratio api fixed / demo majority: {figures['api fixed']['accuracy'] / figures['demo majority']['accuracy']:.3f}")
