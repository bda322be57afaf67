"""The ``sandbox_fusion`` backend: programs run on a SandboxFusion server (the service verl users deploy).

One ``POST <rlif.sandbox.sandbox_fusion_url>`` (the server's ``/run_code`` endpoint) per (program, input), with
SandboxFusion's documented request fields: ``code``, ``language: python``, ``stdin``, ``run_timeout``,
``compile_timeout``, ``memory_limit_MB``, ``files``, ``fetch_files``. The code sent is this package's
``harness.py`` followed by a call that runs the program: the harness serialises return values and exception
types inside the server's sandbox and writes its record as the last marked line of stderr, so this side only
reads text. Response fields read: ``status`` (``Success``/``Failed``/``SandboxError``) and ``run_result``
(``status`` ``Finished``/``Error``/``TimeLimitExceeded``, ``return_code``, ``stdout``, ``stderr``). A gateway
timeout (HTTP 504, as verl's own client does) and a connection error (refused, reset, closed before the reply, or
a timeout while connecting: a server restarting, a load balancer dropping a connection) are retried with a
doubling delay, ``ATTEMPTS`` tries in all; any other failure, or the last try's, is ``SANDBOX_ERROR``. A
timeout waiting for the reply is not retried (the server is busy, and a retry would wait as long again).
Isolation is the server's (its ``isolation`` setting); the layers report says so. Connections go directly to
the URL (proxy environment variables are not used).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.executor import Executor
from verl_rlif.sandbox.signature import (
    OUTPUT_LIMIT,
    SANDBOX_ERROR,
    TIMEOUT,
    bounded,
    each_until_timeout,
    from_record,
)

logger = logging.getLogger(__name__)

MARKER = "@@verl-rlif-record@@"
ATTEMPTS = 3  # tries per request, for HTTP 504 and for connection errors alike
RETRY_DELAY_S = 1.0  # before the first retry; doubled before each next one
TRANSPORT_SLACK_S = 30.0  # request timeout on top of the run and compile timeouts (queueing on the server)
HARNESS_SOURCE = Path(__file__).with_name("harness.py").read_text(encoding="utf-8")
# str hashes (set order) must not depend on the server's interpreter: without PYTHONHASHSEED=0 the script runs
# itself again with it (-I and -E, which would ignore it, become -s); the marker variable stops a second round
HASH_SEED_GUARD = """
import os as _rlif_os, sys as _rlif_sys
if _rlif_sys.flags.hash_randomization and not _rlif_os.environ.pop("RLIF_HASHSEED_SET", None):
    if hasattr(_rlif_sys, "orig_argv"):
        _rlif_os.environ.update(PYTHONHASHSEED="0", RLIF_HASHSEED_SET="1")
        _rlif_flags = {"-I": ["-s"], "-E": []}
        _rlif_argv = [a for arg in _rlif_sys.orig_argv[1:] for a in _rlif_flags.get(arg, [arg])]
        _rlif_os.execv(_rlif_sys.executable, [_rlif_sys.executable, *_rlif_argv])
_rlif_os.environ.pop("RLIF_HASHSEED_SET", None)
"""


def remote_code(program: str, fn_name: str | None, args_json: str | None, float_digits: int) -> str:
    """The harness plus a call running ``program``: the whole script the server executes."""
    return (
        f"{HARNESS_SOURCE}\n\n"
        f"def _rlif_report(record):\n"
        f"    import os\n"
        f"    os.write(2, ('\\n' + {MARKER!r} + record + '\\n').encode('utf-8', 'surrogateescape'))\n\n\n"
        f"{HASH_SEED_GUARD}\n\n"
        f"run({program!r}, {fn_name!r}, {args_json!r}, {int(float_digits)}, _rlif_report)\n"
    )


def _retryable(error: Exception) -> bool:
    """A connection error: refused, reset or closed (also while waiting for the reply), or a timeout while
    connecting. urllib wraps what happens before the request is sent in ``URLError``; what happens while waiting
    for the reply comes unwrapped, where a timeout means a busy server, not a lost connection."""
    if isinstance(error, urllib.error.URLError):
        return isinstance(error.reason, ConnectionError | TimeoutError)
    return isinstance(error, ConnectionError)


class SandboxFusionExecutor(Executor):
    """Signatures from a SandboxFusion server; ``sandbox_fusion_concurrency`` requests in flight (``parallelism``)."""

    def __init__(self, settings: SandboxConfig) -> None:
        super().__init__(settings)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._started = False

    @property
    def parallelism(self) -> int:
        return self.settings.sandbox_fusion_concurrency

    def start(self) -> None:
        if self._started:
            return
        url = self.settings.sandbox_fusion_url
        self.layers = {"remote": f"active (SandboxFusion at {url}; isolation is the server's `isolation` setting)"}
        logger.info("verl-rlif sandbox (sandbox_fusion): %s", self.describe())
        self._started = True

    def close(self) -> None:
        self._started = False

    def _run(self, program: str, inputs: list[str], fn_name: str | None) -> list[str]:
        return each_until_timeout(inputs, lambda arg: self._run_one(program, arg, fn_name))

    def _run_one(self, program: str, arg: str, fn_name: str | None) -> str:
        s = self.settings
        payload = {
            "code": remote_code(program, fn_name, arg if fn_name else None, s.float_significant_digits),
            "language": "python",
            "stdin": "" if fn_name else arg,
            "run_timeout": s.timeout_per_input_s,
            "compile_timeout": s.timeout_per_input_s,
            "memory_limit_MB": s.memory_limit_mb,
            "files": {},
            "fetch_files": [],
        }
        response = self._post(payload)
        return SANDBOX_ERROR if response is None else bounded(self._signature(response, fn_name is not None))

    def _post(self, payload: dict) -> dict | None:
        request = urllib.request.Request(
            self.settings.sandbox_fusion_url,
            data=json.dumps(payload).encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        timeout_s = 2 * self.settings.timeout_per_input_s + TRANSPORT_SLACK_S
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                with self._opener.open(request, timeout=timeout_s) as reply:
                    return json.loads(reply.read())
            except urllib.error.HTTPError as error:
                if error.code != 504 or last:
                    logger.warning("verl-rlif sandbox: SandboxFusion answered HTTP %d", error.code)
                    return None
            except (OSError, ValueError) as error:  # connection refused/reset, timeout, DNS, bad JSON
                if not _retryable(error) or last:
                    tries = f" (after {attempt + 1} tries)" if attempt else ""
                    logger.warning("verl-rlif sandbox: SandboxFusion request failed%s: %s", tries, error)
                    return None
            time.sleep(RETRY_DELAY_S * 2**attempt)
        return None

    def _signature(self, response: dict, call_mode: bool) -> str:
        run = response.get("run_result") if isinstance(response, dict) else None
        if not isinstance(run, dict) or response.get("status") == "SandboxError":
            return SANDBOX_ERROR
        if run.get("status") == "TimeLimitExceeded":
            return TIMEOUT
        stdout = str(run.get("stdout") or "").encode("utf-8", "surrogateescape")
        if len(stdout) > self.settings.output_limit_bytes:
            return OUTPUT_LIMIT
        stderr = str(run.get("stderr") or "")
        records = [line[len(MARKER) :] for line in stderr.split("\n") if line.startswith(MARKER)]
        code = run.get("return_code")
        code = code if isinstance(code, int) else 1
        if code > 128 and not records:  # a shell reports a killed child as 128 + signal
            code = 128 - code
        record = records[-1] if records else ""
        return from_record(record, stdout, code, call_mode, self.settings.float_significant_digits)
