"""RaySampler on a real local Ray cluster (2 logical CPUs): replicas of the embedded model fill one bank.

The claim under test is that data parallelism changes nothing but speed: every request carries
its own seed and the transformers backend samples each seeded request alone, so two replicas must
write the very bank one in-process sampler writes, and the driver must resume and grow it the
same way.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conftest import without_chat_template

from ttscale.errors import ConfigError
from ttscale.records.bank import read_bank
from ttscale.records.datasets import load_dataset
from ttscale.sampling.backends.ray import RaySampler, ReplicaError, split_by_load
from ttscale.sampling.backends.registry import make_sampler, resolve_model
from ttscale.sampling.driver import run_sampling
from ttscale.sampling.sampler import SampleRequest, SampleResult, SamplingConfig

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ttscale[ray]')")

CONFIG = SamplingConfig(template="arith", temperature=0.7, max_tokens=64, seed=11)
"""Short generations keep the test quick; the arith model's answers fit in about 30 tokens."""


def texts(path: Path) -> dict[str, list[str]]:
    """Sample texts per id in bank order (lines of one id merged in order)."""
    return {rid: [s.text for s in rec.samples] for rid, rec in read_bank(path).by_id().items()}


@pytest.fixture
def one_thread():
    """The in-process reference runs with 1 torch thread, like each replica."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    # torch._C's setter: once an in-process vLLM engine has run, torch.set_num_threads is vLLM's
    # no-op, and the restore would leave this thread at 1 (a later engine's calls then mismatch).
    torch._C.set_num_threads(1)
    yield
    torch._C.set_num_threads(before)


def test_split_by_load_balances_candidates_and_keeps_order() -> None:
    reqs = [SampleRequest(f"p{i}", "q", n) for i, n in enumerate([8, 8, 1, 1, 1, 1, 8, 8, 4])]
    chunks = split_by_load(reqs, 2)
    assert [r for c in chunks for r in c] == reqs
    assert [sum(r.n for r in c) for c in chunks] == [20, 20]
    assert split_by_load(reqs[:1], 4) == [reqs[:1]]  # fewer requests than replicas: no empty chunk
    assert len(split_by_load(reqs, 3)) == 3 and all(split_by_load(reqs, 3))


@pytest.mark.parametrize(
    ("options", "parameter"),
    [({"replicas": 0}, "replicas"), ({"replicas": 1.5}, "replicas"), ({"backend": "openai"}, "backend"),
     ({"num_cpus": 0}, "num_cpus"), ({"placement": "random"}, "placement"), ({"num_gpus": -1}, "num_gpus")],
)
def test_bad_options_raise_config_error_naming_them(options: dict, parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_sampler("ray", "arith-tiny", CONFIG, **{"backend": "hf", **options})
    assert info.value.parameter == parameter
    assert not ray.is_initialized()  # rejected before any cluster was started


@pytest.mark.slow
def test_on_a_callers_cluster_replica_errors_come_back_typed(tmp_path: Path) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    try:
        # More replicas than the cluster's CPUs: refused before waiting on actors that never start.
        with pytest.raises(ConfigError) as info:
            make_sampler("ray", "arith-tiny", CONFIG, backend="hf", replicas=3)
        assert info.value.parameter == "replicas" and "at most 2 replicas" in str(info.value)
        # A build error inside a replica (its model folder is missing) arrives as the same ConfigError.
        with pytest.raises(ConfigError) as info:
            make_sampler("ray", str(tmp_path / "missing"), CONFIG, backend="hf", replicas=1)
        assert type(info.value) is ConfigError
        assert info.value.parameter == "model" and info.value.value == str(tmp_path / "missing")
        assert ray.is_initialized()  # the caller's cluster is left running...
        deadline = time.monotonic() + 20  # ...and gets the failed replica's CPU back (kills are asynchronous)
        while ray.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU") == 2
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_two_replicas_fill_the_bank_one_process_would(tmp_path: Path, one_thread: None) -> None:
    problems = load_dataset("arith", limit=8)
    # A copy of the packaged model without its chat template: a chat request then fails inside a replica.
    model = without_chat_template(Path(resolve_model("arith-tiny")), tmp_path / "no-chat-template")
    sampler = make_sampler("ray", str(model), CONFIG, backend="hf", replicas=2, num_cpus=1, cluster_cpus=2)
    assert isinstance(sampler, RaySampler) and ray.is_initialized()
    out = tmp_path / "ray.jsonl"
    served: list[int] = []

    def on_result(result: SampleResult, _stats: object) -> None:
        served.append(result.extra["replica"])

    try:
        assert len({info["pid"] for info in sampler.infos}) == 2
        assert [info["torch_threads"] for info in sampler.infos] == [1, 1]
        assert sampler.batch_size == 2 * sampler.inner_batch_size
        # One call split over both replicas comes back in request order, each with its own n.
        mixed = [SampleRequest(p.id, p.problem, n, 7 + i) for i, (p, n) in enumerate(zip(problems, [1, 3, 1, 2, 1]))]
        results = sampler.generate(mixed)
        assert [(r.request.id, len(r.candidates)) for r in results] == [(q.id, q.n) for q in mixed]
        assert [r.extra["replica"] for r in results] in ([0, 0, 1, 1, 1], [1, 1, 0, 0, 0])
        # The coroutine twin awaits the same replicas and draws the same seeded candidates.
        again = asyncio.run(sampler.agenerate(mixed))
        assert [[c.text for c in r.candidates] for r in again] == [[c.text for c in r.candidates] for r in results]
        # A ttscale error raised by a replica's sampler arrives as itself, not wrapped by Ray.
        chat = SampleRequest("a", "1 + 1", 1, 0, messages=[{"role": "user", "content": "1 + 1"}])
        with pytest.raises(ConfigError) as info:
            sampler.generate([chat])
        assert type(info.value) is ConfigError and info.value.parameter == "prompt_format"
        with pytest.raises(ConfigError) as info:
            asyncio.run(sampler.agenerate([chat]))
        assert type(info.value) is ConfigError and "chat template" in str(info.value)
        stats = run_sampling(sampler, problems, out, 4, on_result=on_result)
        assert stats.requests == 8 and stats.samples == 32 and stats.completion_tokens > 0
        assert sorted(served) == [0, 0, 0, 0, 1, 1, 1, 1]  # 8 equal requests: 4 per replica
        assert read_bank(out).sample_counts() == {p.id: 4 for p in problems}
        # Resume: everything is there, nothing is drawn and the file is untouched.
        before = out.read_bytes()
        again = run_sampling(sampler, problems, out, 4)
        assert (again.requests, again.samples, again.complete) == (0, 0, 8)
        assert out.read_bytes() == before
        # Grow to 6: only the 2 missing samples per problem, seeded from round 4, on both replicas.
        served.clear()
        grown = run_sampling(sampler, problems, out, 6, on_result=on_result)
        assert grown.samples == 16 and sorted(set(served)) == [0, 1]
    finally:
        sampler.close()
    assert not ray.is_initialized()  # the local cluster it started is gone
    with pytest.raises(ReplicaError, match="closed"):
        sampler.generate([SampleRequest("a", "1 + 1", 1, 0)])
    sampler.close()  # idempotent

    reference = tmp_path / "one.jsonl"
    single = make_sampler("hf", resolve_model("arith-tiny"), CONFIG)
    run_sampling(single, problems, reference, 4)
    run_sampling(single, problems, reference, 6)
    got, want = texts(out), texts(reference)
    assert got == want
    assert all(len(v) == 6 for v in got.values())
    assert len({t for v in got.values() for t in v}) > 8  # temperature 0.7: real variety, not one greedy answer
    seeds = {rid: [s.seed for s in rec.samples] for rid, rec in read_bank(out).by_id().items()}
    assert seeds == {rid: [s.seed for s in rec.samples] for rid, rec in read_bank(reference).by_id().items()}

