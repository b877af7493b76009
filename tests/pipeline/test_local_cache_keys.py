"""What KFP's cache is keyed on, for the distillation DAG and under the project's kfp.local setup
(RELIABILITY.md items 37 and 38): content travels as parameters, so new data behind the same path
re-executes the steps; a cached output artifact that was deleted is re-made, never handed on."""

# No `from __future__ import annotations`: kfp reads the components' annotations as types.
import hashlib
import inspect

import yaml
from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Output

from components.common.home import Home
from pipelines.distill import distill_pipeline
from pipelines.local import init_kfp_local, run_distill


def test_the_data_content_is_part_of_every_steps_cache_key(tmp_path):
    path = tmp_path / "distill.yaml"
    compiler.Compiler().compile(distill_pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    # version_data: the sha256 of the data file (computed by `distillops run` / `submit`) is a parameter ...
    assert tasks["version-data"]["inputs"]["parameters"]["data_fingerprint"] == {
        "componentInputParameter": "data_fingerprint"}
    # ... and every step after it receives the content version (DVC's md5) as a parameter.
    consumers = [name for name, task in tasks.items() if "data_version" in task.get("inputs", {}).get("parameters", {})]
    assert {"cache-teacher-outputs", "train-student"} <= set(consumers)
    for name in consumers:
        assert tasks[name]["inputs"]["parameters"]["data_version"]["taskOutputParameter"]["producerTask"] == \
            "version-data"
    assert "sha256_file(path)" in inspect.getsource(run_distill)  # the local run hashes the file's bytes


@dsl.component
def _produce(data_path: str, data_fingerprint: str, counter: str, out: Output[Artifact]):
    with open(counter, "a") as f:
        f.write("x")
    with open(data_path) as src, open(out.path, "w") as dst:
        dst.write(src.read())


@dsl.component
def _consume(inp: Input[Artifact]) -> str:
    with open(inp.path) as f:
        return f.read()


@dsl.pipeline
def _tiny(data_path: str, data_fingerprint: str, counter: str) -> str:
    made = _produce(data_path=data_path, data_fingerprint=data_fingerprint, counter=counter)
    return _consume(inp=made.outputs["out"]).output


def test_kfp_local_cache_follows_the_fingerprint_and_remakes_a_deleted_artifact(tmp_path):
    home = Home.resolve(tmp_path / "home").ensure()
    init_kfp_local(home)  # the project's own setup: SubprocessRunner, cache on, cache under the home
    data, counter = tmp_path / "data.txt", tmp_path / "produced"

    def run(fingerprint: str) -> str:
        return _tiny(data_path=str(data), data_fingerprint=fingerprint, counter=str(counter)).output

    def runs() -> int:
        return len(counter.read_text()) if counter.exists() else 0

    data.write_text("v1")
    v1 = hashlib.sha256(b"v1").hexdigest()
    assert (run(v1), runs()) == ("v1", 1)
    assert (run(v1), runs()) == ("v1", 1)  # cached
    data.write_text("v2")  # new content behind the same path
    assert (run(v1), runs()) == ("v1", 1)  # why the fingerprint must be a parameter: the path alone is stale
    v2 = hashlib.sha256(b"v2").hexdigest()
    assert (run(v2), runs()) == ("v2", 2)  # the fingerprint changed: re-executed

    # 38: delete the cached output artifact; the rerun re-makes it instead of passing a dangling path.
    artifacts = [p for p in home.pipeline_root.rglob("out") if p.is_file() and p.read_text() == "v2"]
    assert artifacts, list(home.pipeline_root.rglob("*"))
    for p in artifacts:
        p.unlink()
    assert (run(v2), runs()) == ("v2", 3)
