"""Promotion when the registry misbehaves, against a real `mlflow server` on loopback
(RELIABILITY.md items 15 and 16): the server refusing connections, and a server that commits a
create and then answers 500 (an ambiguous write, injected by a proxy in front of the real server)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import make_promotable

from components.common import registry
from components.common.config import Config
from components.common.home import Home
from components.promote import audit
from components.promote import runner as promote_step

NAME = "distillops-student"
ROOT = Path(__file__).resolve().parents[2]
CREATE_VERSION = "/api/2.0/mlflow/model-versions/create"


def _cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    code = "import sys; from pipelines.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_registry_refusing_connections_fails_after_bounded_retries_and_the_rerun_is_idempotent(
        mlflow_server, home, tmp_path):
    h = Home.resolve(home)
    client = registry.connect(h)
    s1, g1 = make_promotable(tmp_path, 1)
    promote_step.run(str(home), str(s1), str(g1), Config())
    s2, g2 = make_promotable(tmp_path, 2, champion_version="1")
    mlflow_server.stop()  # connection refused from now on

    # MLflow's HTTP client retries with exponential backoff: 0 s, 1 s, 2 s for three retries at factor 1.
    retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}
    started = time.time()
    down = _cli(["promote", "--home", str(home), "--student", str(s2), "--gate-report", str(g2)], retries)
    elapsed = time.time() - started
    assert down.returncode != 0, down.stderr[-2000:]
    assert "Traceback" not in down.stderr and "distillops promote: " in down.stderr, down.stderr[-2000:]
    assert "Connection refused" in down.stderr or "Max retries exceeded" in down.stderr, down.stderr[-2000:]
    assert elapsed >= 3, f"no backoff between retries ({elapsed:.1f} s)"  # bounded, yet retried with backoff
    assert elapsed < 120, f"retries not bounded ({elapsed:.1f} s)"

    mlflow_server.start()
    client = registry.connect(h)
    assert registry.get_aliases(client, NAME) == {"champion": "1"}  # the failed attempt moved nothing
    for expected in ("register", "noop"):  # the rerun promotes once; a second rerun changes nothing
        assert promote_step.run(str(home), str(s2), str(g2), Config())["action"] == expected
    assert sorted(v.version for v in client.search_model_versions(f"name = '{NAME}'")) == ["1", "2"]
    assert [(e["record"]["version"], e["outcome"]["status"]) for e in audit.show(h, NAME)] == [
        ("1", "applied"), ("2", "applied")]
    assert registry.get_aliases(client, NAME) == {"champion": "2", "previous": "1"}


class _AmbiguousCreateProxy(ThreadingHTTPServer):
    """Forwards every request to the real server; the first create-version request for each
    registered model is forwarded (the server commits it) and then answered with a 500."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.failed: set[str] = set()
        self.creates: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _forward(self):
        server: _AmbiguousCreateProxy = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        headers["Host"] = f"127.0.0.1:{server.upstream_port}"
        upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=60)
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        status, reply_headers = response.status, response.getheaders()
        upstream.close()
        if self.command == "POST" and self.path.startswith(CREATE_VERSION) and status == 200:
            name = json.loads(body)["name"]
            with server.lock:
                server.creates[name] = server.creates.get(name, 0) + 1
                inject = name not in server.failed
                server.failed.add(name)
            if inject:  # committed upstream; the client is told it failed
                status, reply_headers = 500, [("Content-Type", "application/json")]
                payload = b'{"error_code": "INTERNAL_ERROR", "message": "injected after commit"}'
        self.send_response(status)
        for k, v in reply_headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def test_a_500_after_the_server_committed_leaves_exactly_one_version_and_one_ledger_entry(
        mlflow_server, home, tmp_path, monkeypatch):
    proxy = _AmbiguousCreateProxy(mlflow_server.port)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.uri)
        # MLflow's default retries every method on a 500 (7 times): a create would be sent again.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        h = Home.resolve(home)
        client = registry.connect(h)
        s1, g1 = make_promotable(tmp_path, 1)
        result = promote_step.run(str(home), str(s1), str(g1), Config())
        assert (result["version"], result["outcome"]["status"]) == ("1", "applied")
        # Both creates (the student's version and the ledger entry) were answered 500 after committing:
        assert proxy.failed == {NAME, registry.ledger_name(NAME)}
        # the client re-read (by model_digest, by attempt id) instead of creating again.
        assert proxy.creates == {NAME: 1, registry.ledger_name(NAME): 1}
        assert [v.version for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]
        assert len(registry.read_ledger(client, NAME)) == 1
        assert registry.get_aliases(client, NAME) == {"champion": "1"}
        assert audit.verify(client, h, NAME) == []
    finally:
        proxy.shutdown()
        proxy.server_close()
