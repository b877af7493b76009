"""`distillops submit` / `schedule` against real local HTTP endpoints (no cluster): a port nobody
listens on, and a server that answers every request 401. Also the parameter checks."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipelines import submit
from pipelines.cli import main


class _Unauthorized(BaseHTTPRequestHandler):
    requests: list[str] = []

    def _refuse(self):
        type(self).requests.append(f"{self.command} {self.path}")
        body = json.dumps({"error": "Unauthorized", "code": 16}).encode()
        self.send_response(401, "Unauthorized")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def unauthorized_host():
    server = HTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Unauthorized.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_host():
    # Bind, learn the port, close: nothing listens there, so connecting is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


SUBMIT = ["--data", "/var/lib/distillops/incoming/data.jsonl", "--data-fingerprint", "ab" * 32,
          "--teacher-version", "distillops-teacher/v1+sha256:0123456789abcdef"]


def test_submit_to_unreachable_host_is_a_clear_error(closed_host, capsys):
    assert main(["submit", "--host", closed_host, *SUBMIT]) == 2
    err = capsys.readouterr().err
    assert f"{closed_host}: the Kubeflow Pipelines API is unreachable (" in err
    assert "kubectl port-forward" in err


def test_submit_unauthorized_is_a_clear_error(unauthorized_host, capsys):
    assert main(["submit", "--host", unauthorized_host, "--token", "wrong", *SUBMIT]) == 2
    err = capsys.readouterr().err
    assert f"{unauthorized_host}: the health check was refused (401 Unauthorized): not authorized" in err
    # The request really reached the server, and only once (no retry loop on a refused token).
    assert _Unauthorized.requests == ["GET /apis/v2beta1/healthz"]


def test_schedule_unauthorized_and_unreachable(unauthorized_host, closed_host, capsys):
    assert main(["schedule", "--host", unauthorized_host, "--production", "/var/lib/distillops/p.jsonl"]) == 2
    assert "the health check was refused (401 Unauthorized)" in capsys.readouterr().err
    assert main(["schedule", "--host", closed_host, "--production", "/var/lib/distillops/p.jsonl"]) == 2
    assert f"{closed_host}: the Kubeflow Pipelines API is unreachable (" in capsys.readouterr().err


def test_schedule_rejects_a_five_field_cron(capsys):
    assert main(["schedule", "--host", "http://127.0.0.1:9", "--production", "/p.jsonl", "--cron", "0 * * * *"]) == 2
    assert "KFP cron expressions have 6 fields" in capsys.readouterr().err


def test_submit_without_host_or_fingerprint(monkeypatch, capsys):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["submit", *SUBMIT]) == 2
    assert "no KFP host" in capsys.readouterr().err
    assert main(["submit", "--host", "http://127.0.0.1:9", "--data", "/not/here.jsonl", "--teacher-version", "x"]) == 2
    assert "/not/here.jsonl: not on this machine" in capsys.readouterr().err


def test_unknown_pipeline_parameter_names_it(closed_host, capsys):
    assert main(["submit", "--host", closed_host, *SUBMIT, "--param", "epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) epochs" in err and "it takes: config_hash" in err


def test_distill_arguments_cover_the_pipeline_exactly():
    from components.common.config import Config
    from pipelines.distill import distill_pipeline
    from pipelines.drift import drift_pipeline

    args = submit.distill_arguments(Config(), "/d.jsonl", "f" * 64, "models:/t@champion", "t/v1")
    assert submit.check_parameters(distill_pipeline, args)["home"] == "/var/lib/distillops"
    drift = submit.drift_arguments(Config(), "/p.jsonl")
    assert submit.check_parameters(drift_pipeline, drift)["model_ref"] == "models:/distillops-student@champion"
    with pytest.raises(submit.ParameterError, match="missing parameter\\(s\\) config_hash"):
        submit.check_parameters(distill_pipeline, {k: v for k, v in args.items() if k != "config_hash"})


class _HealthyButLocked(_Unauthorized):
    """Health endpoint open, every API call 401: what a multi-user deployment answers a stranger."""

    def do_GET(self):
        if self.path.startswith("/apis/v2beta1/healthz"):
            type(self).requests.append(f"{self.command} {self.path}")
            body = b'{"multi_user": false}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._refuse()


def test_submit_refused_after_the_health_check_goes_through_kfp_client(capsys):
    server = HTTPServer(("127.0.0.1", 0), _HealthyButLocked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _HealthyButLocked.requests = []
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["submit", "--host", host, *SUBMIT]) == 2
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert f"{host}: create the run was refused (401 Unauthorized): not authorized" in err
    assert any(r.startswith("GET /apis/v2beta1/experiments") for r in _HealthyButLocked.requests)


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_cluster_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: distillops" in out and "--host" in out and "docs/deploy.md" in out
