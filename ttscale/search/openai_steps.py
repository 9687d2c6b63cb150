"""One step at a time from an OpenAI-compatible completions endpoint (prompt continuation).

The prompt is the templated problem followed by the branch's text so far; the server stops on the
separator. vLLM servers are asked to keep it in the output (``include_stop_str_in_output``); for a
server that drops it, a step that stopped without a final answer gets it back, so the branch goes
on. Token counts come from the per-token log-probs (``logprobs=1``). HTTP, retries and errors are
:class:`~ttscale.sampling.backends.openai.OpenAISampler`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.sampling.backends.openai import OpenAISampler
from ttscale.sampling.sampler import SampleRequest, SamplingConfig
from ttscale.search.branch import has_final_answer
from ttscale.search.steps import Step, StepRequest


class OpenAIStepGenerator:
    """Steps from ``{base_url}/completions``; ``config`` gives temperature, top-p/k and the template."""

    def __init__(self, model: str | None, config: SamplingConfig, *, separator: str = "\n", base_url: str, **client: object) -> None:
        self.config = config
        self.separator = separator
        # The sampler sends the prompt as it is: the template is applied here, before the branch text.
        raw = config.model_copy(update={"template": "{problem}", "stop": (separator,), "logprobs": True, "prompt_format": "raw"})
        self.sampler = OpenAISampler(model, raw, base_url=base_url, **client)  # type: ignore[arg-type]
        self.engine_calls = 0

    def generate_steps(self, requests: Sequence[StepRequest]) -> list[list[Step]]:
        if not requests:
            return []
        shaped = [
            SampleRequest(
                f"step-{i}", self.config.render(r.problem) + "".join(s.text for s in r.steps), r.n, r.seed,
                overrides={"max_tokens": r.max_tokens, "include_stop_str_in_output": True},
            )
            for i, r in enumerate(requests)
        ]
        results = self.sampler.generate(shaped)
        self.engine_calls += 1
        return [[self._step(c.text or "", c.tokens or 0, c.finish, res.prompt_tokens or 0) for c in res.candidates] for res in results]

    def _step(self, text: str, tokens: int, finish: str | None, prompt: int) -> Step:
        if finish == "length":
            return Step(text, tokens, "length", prompt_tokens=prompt)
        if text.endswith(self.separator):
            return Step(text, tokens, "separator", prompt_tokens=prompt)
        if has_final_answer(text):
            return Step(text, tokens, "eos", prompt_tokens=prompt)
        return Step(text + self.separator, tokens, "separator", prompt_tokens=prompt)  # a server that drops the stop string

    def close(self) -> None:
        self.sampler.close()
