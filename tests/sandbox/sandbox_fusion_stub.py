"""A local stand-in for a SandboxFusion server: ``POST /run_code`` with the documented request and response fields.

Listens on 127.0.0.1 only and runs the code with ``python -I -c`` (tests send benign programs only). Failure
modes for the client's error handling: ``fail_with`` HTTP statuses answered first, ``reset_connections``
requests answered by a TCP reset instead (a server restarting, a load balancer dropping the connection),
``sandbox_error`` replies.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUIRED = {"code", "language"}
DOCUMENTED = {"code", "language", "stdin", "run_timeout", "compile_timeout", "memory_limit_MB", "files", "fetch_files"}


def run_code(request: dict) -> dict:
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", request["code"]],
            input=(request.get("stdin") or "").encode(),
            capture_output=True,
            timeout=float(request.get("run_timeout", 10)),
        )
    except subprocess.TimeoutExpired as expired:
        result = {"status": "TimeLimitExceeded", "execution_time": expired.timeout, "return_code": None}
        return {"status": "Failed", "message": "", "compile_result": None, "run_result": result, "files": {}}
    result = {
        "status": "Finished",
        "execution_time": 0.01,
        "return_code": done.returncode,
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": done.stderr.decode(errors="replace"),
    }
    status = "Success" if done.returncode == 0 else "Failed"
    return {"status": status, "message": "", "compile_result": None, "run_result": result, "files": {}}


class StubServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: list[int] = []
        self.reset_connections = 0
        self.sandbox_error = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                if self.path != "/run_code" or not REQUIRED <= set(body) or not set(body) <= DOCUMENTED:
                    return self._reply(422, {"detail": "bad request"})
                if stub.reset_connections:
                    stub.reset_connections -= 1
                    # linger 0: closing sends RST, so the client sees "connection reset", not a clean close
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return None
                if stub.fail_with:
                    return self._reply(stub.fail_with.pop(0), {"detail": "injected"})
                if stub.sandbox_error:
                    return self._reply(200, {"status": "SandboxError", "message": "injected", "run_result": None})
                return self._reply(200, run_code(body))

            def _reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/run_code"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
