"""The packaged arithmetic test set as an lm-evaluation-harness task (local files, no hub).

``write_task(folder)`` writes ``<name>.jsonl`` (id, problem, answer) and ``<name>.yaml``: a
``generate_until`` task prompting ``Question: {problem}\\nAnswer:\\n`` (the model's own template;
its chat template turns a bare question into the same prompt), scored by exact match of the
number after ``####``. Sampling at the model's temperature (ttscale.json), so a single sample and a
vote differ. Run it with ``lm-eval run --include_path FOLDER --tasks NAME ...``; set
``HF_DATASETS_OFFLINE=1`` and ``HF_HUB_OFFLINE=1``: the ``json`` loader reads the local file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ttscale.arith.paths import model_dir, test_set_path
from ttscale.sampling.model_defaults import sampling_defaults

TASK_NAME = "ttscale_arith"

_YAML = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{problem}}}}\\nAnswer:\\n"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["Question:"]
  do_sample: true
  temperature: {temperature}
  max_gen_toks: {max_tokens}
filter_list:
  - name: answer
    filter:
      - function: regex
        regex_pattern: "#### (-?[0-9]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task(folder: Path, *, limit: int = 20, test_set: str = "default", name: str = TASK_NAME) -> Path:
    """Write the task's data and YAML into ``folder`` (created); returns the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in test_set_path(test_set).read_text(encoding="utf-8").splitlines() if line.strip()]
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"], "answer": str(r["answer"])}) + "\n"
                            for r in rows[:limit]), encoding="utf-8")
    own = sampling_defaults(model_dir())
    yaml = folder / f"{name}.yaml"
    yaml.write_text(_YAML.format(name=name, data=json.dumps(str(data.resolve())), temperature=own["temperature"],
                                 max_tokens=own["max_tokens"]), encoding="utf-8")
    return yaml
