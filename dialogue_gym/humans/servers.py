"""Local llama.cpp servers for the bundled SmolLM2 (tests, demos, benchmarks).

llama-cpp-python's OpenAI-compatible server answers one request at a time, so for concurrency
start several and give ``LiteLLMBackend`` the list of their URLs as ``api_base``: it spreads
each request to the least busy one. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from dialogue_gym.humans.backends import smollm2_gguf

# The server runs under this wrapper: a daemon thread ends it when its parent is gone. A parent
# killed by a signal runs no atexit handler, and an orphaned server would hold a core and a GiB.
_WATCHED_SERVER = """
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServers:
    """``n`` llama-cpp-python servers on 127.0.0.1, started on enter and stopped on exit (or
    within a second of this process's end, however it ends)."""

    def __init__(
        self, n: int = 1, model: str | Path | None = None, n_ctx: int = 4096, threads: int = 1
    ) -> None:
        self.n, self.model, self.n_ctx, self.threads = n, model, n_ctx, threads
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        self.api_bases: list[str] = []

    def __enter__(self) -> LlamaServers:
        model = str(self.model or smollm2_gguf())
        for _ in range(self.n):
            port = free_port()
            cmd = [
                sys.executable,
                "-c",
                _WATCHED_SERVER,
                "--model",
                model,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(self.n_ctx),
                "--n_threads",
                str(self.threads),
                "--n_threads_batch",  # prompt processing too: its default (all cores) oversubscribes
                str(self.threads),
                # keep the evaluated state of recent prompts: a conversation's next call shares its
                # prefix, and with several conversations interleaved the server's single
                # last-prompt reuse would be lost at every switch
                "--cache",
                "true",
                "--cache_type",
                "ram",
                "--cache_size",
                str(1 << 30),
            ]
            log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the server
            self.logs.append(log)
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            self.api_bases.append(f"http://127.0.0.1:{port}/v1")
        for proc, base, log in zip(self.procs, self.api_bases, self.logs, strict=True):
            self._wait(proc, base, log)
        return self

    @staticmethod
    def _wait(proc: subprocess.Popen, base: str, log: Any, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"llama.cpp server at {base} not ready after {timeout:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self.logs:
            log.close()
