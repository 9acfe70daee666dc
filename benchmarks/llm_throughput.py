"""LLM-human throughput: the env path against the same servers called directly.

Run: python benchmarks/llm_throughput.py [--servers 2] [--episodes 8] [--env DialogueDonate-v0]

Starts ``--servers`` llama-cpp-python servers on 127.0.0.1 with the bundled SmolLM2 (each answers
one request at a time), then measures completion tokens/s for:

1. env, sequential: episodes one after another (``evaluate(workers=1)``);
2. env, concurrent: ``--episodes`` episodes at once (``evaluate(workers=N)``), LLM calls spread
   over the servers (each call to the least busy one);
3. direct: every request the concurrent env run sent (same messages, seeds, max tokens),
   replayed straight to the same servers with the same concurrency, no env in between.

Target (issue 3): the concurrent env path reaches at least 80% of the direct figure.
The response cache is off, so every call reaches a server, and each path starts on fresh servers
(their prompt caches empty).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dialogue_gym  # noqa: F401
from dialogue_gym.evaluation import evaluate, reference_agent
from dialogue_gym.humans.backends import LiteLLMBackend, _import_litellm
from dialogue_gym.humans.servers import LlamaServers


class Recorder(LiteLLMBackend):
    """A LiteLLMBackend that also keeps every request it sends."""

    log: list = []

    def complete(self, messages, *, seed=None, max_tokens=None):
        Recorder.log.append(([dict(m) for m in messages], seed, max_tokens or self.max_tokens))
        return super().complete(messages, seed=seed, max_tokens=max_tokens)


def env_run(env_id: str, backend: Recorder, episodes: int, workers: int, max_turns: int) -> tuple[float, int]:
    """Play ``episodes`` competent-agent episodes with ``workers`` at a time; (wall s, completion tokens)."""
    start = time.perf_counter()
    agent = reference_agent(env_id, "competent")
    results = evaluate(agent, env_id, episodes, seed=0, workers=workers, max_turns=max_turns, human=backend)
    wall = time.perf_counter() - start
    errors = [r.outcome["error"] for r in results if "error" in r.outcome]
    if errors:
        raise RuntimeError(f"{len(errors)} episodes failed, first: {errors[0]}")
    return wall, sum(r.outcome["llm_usage"]["completion_tokens"] for r in results)


def direct_run(requests: list, bases: list[str], workers: int) -> tuple[float, int]:
    """Send ``requests`` straight to the servers with litellm, ``workers`` at a time, each to the
    server with the fewest requests in flight (the same choice the env's backend makes)."""
    litellm = _import_litellm()
    in_flight, lock = [0] * len(bases), threading.Lock()

    def call(req: tuple) -> int:
        messages, seed, max_tokens = req
        with lock:
            i = min(range(len(bases)), key=in_flight.__getitem__)
            in_flight[i] += 1
        try:
            r = litellm.completion(
                model="openai/smollm2",
                messages=messages,
                api_base=bases[i],
                api_key="none",
                temperature=0.7,
                max_tokens=max_tokens,
                seed=seed,
            )
        finally:
            with lock:
                in_flight[i] -= 1
        return r.usage.completion_tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        tokens = sum(pool.map(call, requests))
    return time.perf_counter() - start, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="DialogueDonate-v0")
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--max-turns", type=int, default=3)
    args = ap.parse_args()
    _import_litellm()
    rows = []
    # each path gets fresh servers: their prompt caches must not carry over from the last path
    for name, workers in (
        ("env, sequential episodes", 1),
        (f"env, {args.episodes} concurrent episodes", args.episodes),
    ):
        with LlamaServers(args.servers) as servers:
            backend = Recorder(
                "openai/smollm2", api_base=servers.api_bases, api_key="none", cache=False, max_tokens=64
            )
            Recorder.log.clear()
            wall, tok = env_run(args.env, backend, args.episodes, workers, args.max_turns)
            rows.append((name, workers, wall, tok))
    requests = list(Recorder.log)  # those of the concurrent run, in the order they were sent
    with LlamaServers(args.servers) as servers:
        wall_d, tok_d = direct_run(requests, servers.api_bases, args.episodes)
    rows.append((f"direct, same {len(requests)} requests", args.episodes, wall_d, tok_d))
    print(
        f"{args.env}, {args.episodes} episodes of {args.max_turns} turns, {args.servers} llama.cpp servers\n"
    )
    print("| path | concurrency | wall s | completion tokens | tokens/s |")
    print("|---|---|---|---|---|")
    for name, conc, wall, tok in rows:
        print(f"| {name} | {conc} | {wall:.1f} | {tok} | {tok / wall:.1f} |")
    env_tps, direct_tps = rows[1][3] / rows[1][2], tok_d / wall_d
    print(f"\nconcurrent env path / direct: {env_tps / direct_tps:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
