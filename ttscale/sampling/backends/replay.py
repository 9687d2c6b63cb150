"""Replay: serve the samples of an existing bank as if a model generated them.

Request ``(id, n, round)`` returns samples ``round .. round+n-1`` of that problem, in bank order,
so a policy that asks for more samples in rounds (adaptive stopping, allocation) sees exactly the
samples a live run would have drawn in that order. For simulations and tests; no model needed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank
from ttscale.records.models import Record, Sample
from ttscale.sampling.sampler import (
    SampleRequest,
    SampleResult,
    SamplingConfig,
    SyncSamplerMixin,
)


class ReplayExhaustedError(ConfigError):
    """A request asked for more samples of a problem than the bank holds."""


def _replayed(sample: Sample, seed: int | None) -> Sample:
    """The bank sample as a sampler draws one: the generation fields only (no grading or extra
    fields), with text, latency, seed and mean log-prob always set, as a live backend sets them."""
    # Built without re-validation: every value comes from a sample the bank reader validated.
    return Sample.model_construct(
        text=sample.text or "", answer=sample.answer, tokens=sample.tokens, logprob=sample.logprob,
        mean_logprob=sample.confidence(), finish=sample.finish, latency=sample.latency or 0.0,
        seed=sample.seed if sample.seed is not None else seed,
        # Scores travel with the sample: a replayed scored bank stays scored (bench, reward policies).
        reward=sample.reward, rewards=dict(sample.rewards) if sample.rewards else None,
    )


class ReplaySampler(SyncSamplerMixin):
    """A sampler over a bank file (or records already in memory).

    ``shuffle_seed`` replays each problem's samples in a fixed random order instead of bank order
    (a fresh permutation per problem, the same for every request), to simulate other draws.
    """

    name = "replay"
    concurrency = 1

    def __init__(
        self,
        bank: str | Path | Sequence[Record],
        config: SamplingConfig | None = None,
        *,
        shuffle_seed: int | None = None,
        batch_size: int = 1024,
    ) -> None:
        self.config = config or SamplingConfig()
        self.batch_size = batch_size
        records = read_bank(bank).records if isinstance(bank, (str, Path)) else list(bank)
        self.source = str(bank) if isinstance(bank, (str, Path)) else "<records>"
        self.samples: dict[str, list[Sample]] = {}
        for record in records:
            samples = list(record.samples)
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}\x00{record.id}").shuffle(samples)
            self.samples.setdefault(record.id, []).extend(samples)
        self.calls = 0

    def available(self, problem_id: str) -> int:
        return len(self.samples.get(problem_id, ()))

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        results = []
        for req in requests:
            pool = self.samples.get(req.id)
            if pool is None:
                raise ConfigError("id", req.id, f"a problem id present in the replayed bank {self.source}")
            if req.round + req.n > len(pool):
                raise ReplayExhaustedError(
                    "n", req.round + req.n, f"at most {len(pool)} samples of {req.id!r} (all the replayed bank {self.source} holds)"
                )
            self.calls += 1
            cands = [_replayed(s, req.seed) for s in pool[req.round : req.round + req.n]]
            results.append(SampleResult(
                request=req, candidates=cands, prompt_tokens=None,
                completion_tokens=sum(c.tokens or 0 for c in cands),
                latency=max((c.latency for c in cands), default=0.0),
            ))
        return results
