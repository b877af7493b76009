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
          "--teacher-version", "distillops-teacher/v1+sha256:0123456789abcdef", "--allow-mutable-image"]
DIGEST = "registry.example.com/distillops@sha256:" + "0123456789abcdef" * 4


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
    assert main(["schedule", "--host", unauthorized_host, "--production", "/var/lib/distillops/p.jsonl",
                 "--allow-mutable-image"]) == 2
    assert "the health check was refused (401 Unauthorized)" in capsys.readouterr().err
    assert main(["schedule", "--host", closed_host, "--production", "/var/lib/distillops/p.jsonl",
                 "--allow-mutable-image"]) == 2
    assert f"{closed_host}: the Kubeflow Pipelines API is unreachable (" in capsys.readouterr().err


def test_schedule_rejects_a_five_field_cron(capsys):
    assert main(["schedule", "--host", "http://127.0.0.1:9", "--production", "/p.jsonl", "--cron", "0 * * * *",
                 "--allow-mutable-image"]) == 2
    assert "KFP cron expressions have 6 fields" in capsys.readouterr().err


def test_submit_without_host_or_fingerprint(monkeypatch, capsys):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["submit", *SUBMIT]) == 2
    assert "no KFP host" in capsys.readouterr().err
    assert main(["submit", "--host", "http://127.0.0.1:9", "--data", "/not/here.jsonl", "--teacher-version", "x",
                 "--allow-mutable-image"]) == 2
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


class _RecordingApi(BaseHTTPRequestHandler):
    """A stand-in for the KFP v2beta1 REST API that records what the client sends. It isolates
    the client side (what `submit`/`schedule` send); it does not show that a cluster runs it."""

    calls: list[tuple[str, str, dict]] = []
    recurring: list[dict] = []

    def _reply(self, payload: dict, status: int = 200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        type(self).calls.append(("GET", self.path, {}))
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})
        elif self.path.startswith("/apis/v2beta1/recurringruns"):
            self._reply({"recurringRuns": type(self).recurring, "total_size": len(type(self).recurring)})
        else:
            self._reply({"error": "not found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        type(self).calls.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        elif self.path == "/apis/v2beta1/runs":
            self._reply({"run_id": "run-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/recurringruns":
            created = {"recurring_run_id": "rr-1", "display_name": body["display_name"]}
            type(self).recurring.append(created)
            self._reply(created)
        else:
            self._reply({"error": "not found"}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_api():
    _RecordingApi.calls, _RecordingApi.recurring = [], []
    server = HTTPServer(("127.0.0.1", 0), _RecordingApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_submit_sends_the_compiled_pipeline_with_platform_spec_and_parameters(recording_api, capsys):
    assert main(["submit", "--host", recording_api, "--experiment", "nightly", "--run-name", "r1", "--json",
                 *SUBMIT, "--set", "distill.epochs=2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": "run-1", "url": f"{recording_api}/#/runs/details/run-1"}
    posted = {path: body for method, path, body in _RecordingApi.calls if method == "POST"}
    assert posted["/apis/v2beta1/experiments"]["display_name"] == "nightly"
    run = posted["/apis/v2beta1/runs"]
    assert run["display_name"] == "r1" and run["experiment_id"] == "exp-1"
    params = run["runtime_config"]["parameters"]
    assert params["home"] == "/var/lib/distillops" and params["data_fingerprint"] == "ab" * 32
    assert json.loads(params["train_config"])["distill"]["epochs"] == 2
    # The run carries the platform spec (secrets, PVC) next to the pipeline spec.
    spec = run["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "distillops-distill"
    executors = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-promote"]["secretAsEnv"][0]["secretName"] == "distillops-object-store"


def test_schedule_creates_the_recurring_run_once(recording_api, capsys):
    args = ["schedule", "--host", recording_api, "--production", "/var/lib/distillops/p.jsonl", "--json",
            "--allow-mutable-image"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"created": True, "recurring_run_id": "rr-1"}
    created = [body for method, path, body in _RecordingApi.calls if path == "/apis/v2beta1/recurringruns"
               and method == "POST"]
    assert len(created) == 1
    assert created[0]["trigger"]["cron_schedule"]["cron"] == "0 0 */6 * * *"
    assert created[0]["max_concurrency"] in ("1", 1) and created[0]["no_catchup"] is True  # int64 may travel as text
    assert created[0]["runtime_config"]["parameters"]["production_path"] == "/var/lib/distillops/p.jsonl"
    # Applied again (the manifests' Job reruns): the existing recurring run is kept, none created.
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"created": False, "recurring_run_id": "rr-1"}
    assert sum(1 for m, p, _ in _RecordingApi.calls if m == "POST" and p == "/apis/v2beta1/recurringruns") == 1


# --- Images (RELIABILITY item 36; issue 13): a cluster run uses a digest unless told otherwise ---

def _images(pipeline_spec: dict) -> set[str]:
    return {e["container"]["image"] for e in pipeline_spec["deploymentSpec"]["executors"].values()}


@pytest.mark.parametrize("command", ["submit", "schedule"])
@pytest.mark.parametrize("image", [None, "registry.example.com/distillops:latest", "registry.example.com/d:0.1.0"])
def test_a_movable_image_tag_is_refused_before_anything_is_sent(recording_api, capsys, command, image):
    args = ([*SUBMIT[:-1]] if command == "submit" else ["--production", "/var/lib/distillops/p.jsonl"])
    args += ["--image", image] if image else []
    assert main([command, "--host", recording_api, *args]) == 2
    err = capsys.readouterr().err
    assert "is a movable tag" in err and "--allow-mutable-image" in err and "@sha256:" in err
    assert "Traceback" not in err
    assert _RecordingApi.calls == []  # refused before the health check


def test_submit_with_a_digest_runs_every_task_in_it(recording_api, capsys):
    assert main(["submit", "--host", recording_api, *SUBMIT[:-1], "--image", DIGEST, "--json"]) == 0
    run = next(body for method, path, body in _RecordingApi.calls if (method, path) == ("POST", "/apis/v2beta1/runs"))
    assert _images(run["pipeline_spec"]["pipeline_spec"]) == {DIGEST}


def test_schedule_with_a_digest_and_an_explicit_movable_tag(recording_api, capsys):
    base = ["schedule", "--host", recording_api, "--production", "/var/lib/distillops/p.jsonl", "--json"]
    assert main([*base, "--image", DIGEST]) == 0
    created = [b for m, p, b in _RecordingApi.calls if (m, p) == ("POST", "/apis/v2beta1/recurringruns")]
    assert _images(created[0]["pipeline_spec"]["pipeline_spec"]) == {DIGEST}
    _RecordingApi.calls, _RecordingApi.recurring = [], []
    assert main([*base, "--image", "registry.example.com/distillops:latest", "--allow-mutable-image"]) == 0


def test_a_malformed_image_is_a_clear_error(recording_api, capsys):
    assert main(["submit", "--host", recording_api, *SUBMIT, "--image", "Bad Image@sha256:xyz"]) == 2
    assert "expected name:tag or name@sha256:<64 hex digits>" in capsys.readouterr().err
