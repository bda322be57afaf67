"""The ``sandbox_fusion`` backend against a local server implementing SandboxFusion's ``/run_code`` (loopback only)."""

import http.client
import socket
import types

import pytest
from sandbox_fusion_stub import StubServer
from sandbox_helpers import start_or_skip

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox import make_executor
from verl_rlif.sandbox.remote import SandboxFusionExecutor

PROGRAMS = [
    ("a, b = map(int, input().split())\nprint(a + b, 1 / 3)", ["1 2", "5 5"], None),
    ("import sys\nprint(sys.stdin.read().upper())\nsys.exit(0)", ["abc\n"], None),
    ("raise ValueError('no')", [""], None),
    ("import sys\nsys.exit(3)", [""], None),
    ("def f(xs):\n    return {'n': len(xs), 'set': set(xs)}", [[[1, 2, 2]], [[3]]], "f"),
    ("class Solution:\n    def go(self, a: List[int]) -> int:\n        return sum(a)", [[[1, 2]]], "go"),
    ("def f(x):\n    print('noise')\n    return x / 0", [[1]], "f"),
]


@pytest.fixture(scope="module")
def server():
    with StubServer() as stub:
        yield stub


def remote(server, **settings):
    executor = make_executor(SandboxConfig(backend="sandbox_fusion", sandbox_fusion_url=server.url, **settings))
    assert isinstance(executor, SandboxFusionExecutor)
    executor.start()
    return executor


def test_same_signatures_as_the_local_pool(server):
    executor = remote(server, timeout_per_input_s=10.0)
    local = start_or_skip(workers=1, use_namespaces=False, timeout_per_input_s=10.0)
    try:
        for program, inputs, fn_name in PROGRAMS:
            assert executor.run(program, inputs, fn_name) == local.run(program, inputs, fn_name), program
    finally:
        local.close()
    assert executor.run(*PROGRAMS[0][:2]) == ["OUT:3 0.333333", "OUT:10 0.333333"]


def test_requests_carry_the_documented_fields(server):
    server.requests.clear()
    executor = remote(server, timeout_per_input_s=2.5, memory_limit_mb=512)
    executor.run("print(input())", ["hello"])
    (request,) = server.requests
    assert request["language"] == "python" and request["stdin"] == "hello"
    assert request["run_timeout"] == 2.5 and request["memory_limit_MB"] == 512
    assert request["files"] == {} and request["fetch_files"] == []
    assert "print(input())" in request["code"]  # inside the harness, which runs it in the server's sandbox


def test_time_limit_exceeded_is_a_timeout(server):
    executor = remote(server, timeout_per_input_s=0.5)
    assert executor.run("while True:\n    pass", ["", ""]) == ["TIMEOUT", "SKIPPED"]


def test_gateway_timeouts_are_retried(server, monkeypatch):
    monkeypatch.setattr("verl_rlif.sandbox.remote.RETRY_DELAY_S", 0.01)
    server.requests.clear()
    server.fail_with = [504, 504]
    assert remote(server).run("print(7)", [""]) == ["OUT:7"]
    assert len(server.requests) == 3
    server.fail_with = [500]
    assert remote(server).run("print(8)", [""]) == ["SANDBOX_ERROR"]  # other HTTP errors are not retried


def test_connection_errors_are_retried_with_a_growing_delay(server, monkeypatch):
    delays = []
    # the client's own clock only (the time module itself is shared with the executor's threads)
    monkeypatch.setattr("verl_rlif.sandbox.remote.time", types.SimpleNamespace(sleep=delays.append))
    server.requests.clear()
    server.reset_connections = 2
    assert remote(server).run("print(9)", [""]) == ["OUT:9"]  # two resets, then an answer: as for HTTP 504
    assert len(server.requests) == 3 and delays == [1.0, 2.0]
    delays.clear()
    server.reset_connections = 3
    assert remote(server).run("print(9)", [""]) == ["SANDBOX_ERROR"]  # the same limit: three tries in all
    assert server.reset_connections == 0 and delays == [1.0, 2.0]
    delays.clear()
    refused = SandboxConfig(backend="sandbox_fusion", sandbox_fusion_url="http://127.0.0.1:9/run_code")
    assert make_executor(refused).run("print(1)", [""]) == ["SANDBOX_ERROR"]
    assert delays == [1.0, 2.0]  # connection refused is retried too


def test_which_failures_are_retried():
    from urllib.error import URLError

    from verl_rlif.sandbox.remote import _retryable

    assert _retryable(URLError(ConnectionRefusedError())) and _retryable(URLError(TimeoutError("timed out")))
    assert _retryable(ConnectionResetError()) and _retryable(http.client.RemoteDisconnected("closed"))
    assert not _retryable(TimeoutError("timed out"))  # waiting for the reply: a busy server, not a lost connection
    assert not _retryable(URLError(socket.gaierror("unknown host"))) and not _retryable(ValueError("bad JSON"))


def test_sandbox_errors_and_unreachable_servers_mean_no_result(server, monkeypatch):
    monkeypatch.setattr("verl_rlif.sandbox.remote.RETRY_DELAY_S", 0.01)
    server.sandbox_error = True
    try:
        assert remote(server).run("print(1)", [""]) == ["SANDBOX_ERROR"]
    finally:
        server.sandbox_error = False
    unreachable = SandboxConfig(backend="sandbox_fusion", sandbox_fusion_url="http://127.0.0.1:9/run_code")
    assert make_executor(unreachable).run("print(1)", [""]) == ["SANDBOX_ERROR"]


def test_backend_needs_its_url():
    with pytest.raises(ValueError, match="needs the run_code endpoint"):
        SandboxConfig(backend="sandbox_fusion")


def test_hash_and_random_are_deterministic_and_match_the_local_pool(server):
    # the stub runs `python -I -c`, which ignores PYTHONHASHSEED: the script must fix the seed itself
    program = "import random\nprint(random.random(), hash('abc'), list({'a', 'b', 'c', 'd', 'e', 'f', 'g'}))"
    first = remote(server).run(program, [""])
    assert first[0].startswith("OUT:") and remote(server).run(program, [""]) == first  # a new executor: no cache
    local = start_or_skip(workers=1, use_namespaces=False)
    try:
        assert local.run(program, [""]) == first
    finally:
        local.close()
