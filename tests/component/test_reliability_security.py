"""Reliability checklist D (docs/reliability.md): nothing offered as a model runs code when loaded.

24: pickle-format weights offered as teacher or student are refused, and the planted payload never
runs (the resume checkpoint: tests/component/test_consolidation_fixes.py). 25: a registered model that is not the plain transformers flavor is
refused before any of its files is used. 26: a model asking for remote code is refused.
29: the dependency floors the checklist names.
"""

import ast
import json
import os
import pickle
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from components.common import registry
from components.common.home import Home
from components.common.modeling import ModelError, load_classifier
from components.common.runtime import offline_environment
from components.common.teachers import load_teacher, resolve_teacher
from components.distillation.students import build_student_from_model

ROOT = Path(__file__).parents[2]


class _Planted:
    """Unpickling this runs code: it creates the marker file it names."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_model_dir(src: Path, dest: Path, marker: Path) -> Path:
    """A copy of a real model directory whose weights are a pickle carrying the payload."""
    shutil.copytree(src, dest)
    for f in dest.glob("*.safetensors"):
        f.unlink()
    (dest / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Planted(marker)}))
    return dest


# --- 24 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_weights_offered_as_teacher_are_refused_and_run_nothing(tmp_path, tiny_teacher, name):
    marker = tmp_path / "planted-ran"
    bad = _pickle_model_dir(tiny_teacher, tmp_path / "evil", marker)
    if name != "pytorch_model.bin":
        (bad / "pytorch_model.bin").rename(bad / name)
    with pytest.raises(ModelError, match=rf"no safetensors weights \(pickle-format files \['{name}'\]"):
        load_teacher(bad)
    assert not marker.exists()


def test_pickle_weights_offered_as_student_or_gate_model_are_refused(tmp_path, tiny_teacher):
    marker = tmp_path / "planted-ran"
    bad = _pickle_model_dir(tiny_teacher, tmp_path / "evil", marker)
    with pytest.raises(ModelError, match="never loaded: unpickling can run code"):
        build_student_from_model(bad, ["a", "b"])  # student.init: model
    with pytest.raises(ModelError, match="never loaded"):
        load_classifier(bad)  # the gate's student / champion, drift monitor's model
    assert not marker.exists()


def _from_pretrained_calls():
    """(file, line, keyword names) of every ``Auto*/...Model*.from_pretrained(...)`` call in the code."""
    for folder in ("components", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "from_pretrained" and isinstance(node.func.value, ast.Name)):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node.func.value.id, node.keywords


def test_every_model_load_is_safetensors_only_and_never_weights_only_false():
    loads = [(where, kw) for where, cls, kw in _from_pretrained_calls() if "Model" in cls]
    assert loads, "no model loads found: the scan is stale"
    # GGUF (the shipped generative teacher) is a tensor container too: no pickle, no code.
    assert [where for where, kw in loads
            if not any(k.arg == "use_safetensors" and getattr(k.value, "value", None) is True for k in kw)
            and not any(k.arg == "gguf_file" for k in kw)] == []
    sources = [p for folder in ("components", "pipelines") for p in (ROOT / folder).rglob("*.py")]
    assert [str(p) for p in sources if "weights_only=False" in p.read_text().replace(" ", "")
            or "torch.load(" in p.read_text()] == []


# --- 25 ---------------------------------------------------------------------------------------


def _register(home: Home, name: str, src: Path):
    client = registry.connect(home)
    client.create_registered_model(name)
    mv = client.create_model_version(name, src.as_uri())
    client.set_registered_model_alias(name, "champion", mv.version)


def _mlflow_model(tmp_path: Path, flavors: dict, files: dict[str, bytes]) -> Path:
    src = tmp_path / "model-src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    (src / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    return src


PYFUNC_PICKLE = {"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl",
                                     "cloudpickle_version": "3.0.0"}}
CUSTOM_LOADER = {"python_function": {"loader_module": "evil_loader", "code": "code", "data": "model"},
                 "transformers": {"source_model_name": "x"}}
PICKLED_MODEL = {"sklearn": {"pickled_model": "../x.pkl", "serialization_format": "cloudpickle"}}


@pytest.mark.parametrize("flavors,why", [(PYFUNC_PICKLE, "'python_model'"), (CUSTOM_LOADER, "loader_module 'evil_loader'"),
                                         (PICKLED_MODEL, "flavor 'sklearn' is not allowed")])
def test_registered_model_that_could_run_code_is_refused_before_use(home, tmp_path, tiny_teacher, flavors, why):
    marker = tmp_path / "planted-ran"
    payload = pickle.dumps(_Planted(marker))
    src = _mlflow_model(tmp_path, flavors, {
        "python_model.pkl": payload, "code/evil_loader.py": f"open({str(marker)!r}, 'w')\n".encode(),
        **{f"model/{f.name}": f.read_bytes() for f in tiny_teacher.iterdir()}})
    h = Home.resolve(home).ensure()
    _register(h, "evil", src)
    with pytest.raises(registry.RegistryError, match=rf"models:/evil/1: refused, it could run code.*{why}"):
        resolve_teacher("models:/evil@champion", h)
    assert not marker.exists()
    assert not (h.root / "models" / "evil-v1").exists()  # nothing of it was unpacked for use


def test_a_model_logged_by_the_pipeline_passes_the_allowlist(home, tmp_path, tiny_teacher):
    from components.common.tracking import log_model

    h = Home.resolve(home).ensure()
    uri = log_model(h, tiny_teacher)
    client = registry.connect(h)
    mv = registry.register(client, uri, "good", {})
    teacher = resolve_teacher(f"models:/good/{mv.version}", h)
    assert (teacher.path / "config.json").is_file() and list(teacher.path.glob("*.safetensors"))


def test_pipeline_environment_forbids_mlflow_pickle_deserialization(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # even when the pod's env says otherwise
    offline_environment()
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


# --- 26 ---------------------------------------------------------------------------------------


def test_a_teacher_asking_for_remote_code_is_refused(tmp_path, tiny_teacher):
    marker = tmp_path / "remote-code-ran"
    bad = tmp_path / "remote"
    shutil.copytree(tiny_teacher, bad)
    config = json.loads((bad / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilForSequenceClassification"}
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(ModelError, match=r"config.json: auto_map \['AutoModelForSequenceClassification'\].*"
                                         r"trust_remote_code"):
        load_teacher(bad)
    with pytest.raises(ModelError, match="auto_map"):
        build_student_from_model(bad, ["a", "b"])
    assert not marker.exists()


def test_no_code_path_enables_remote_code():
    calls = list(_from_pretrained_calls())
    assert [where for where, _, kw in calls
            if not any(k.arg == "trust_remote_code" and getattr(k.value, "value", None) is False for k in kw)] == []


# --- 29 ---------------------------------------------------------------------------------------


FLOORS = [("mlflow", "3.16.1"), ("torch", "2.10"), ("transformers", "5.0")]


@pytest.mark.parametrize("package,floor", FLOORS)
def test_dependency_floors(package, floor):
    # mlflow 3.16.1: the basic-auth fixes the checklist asks for (3.11 without basic auth); torch 2.10:
    # weights_only loads hardened; transformers 5.0: the 5.x line carries PR #43140. pip-audit needs the
    # advisory database online and is not run here.
    assert Version(version(package).split("+")[0]) >= Version(floor), f"{package} {version(package)} < {floor}"


def test_declared_pins_respect_the_floors():
    from packaging.specifiers import SpecifierSet

    text = (ROOT / "pyproject.toml").read_text()
    for package, floor in FLOORS:
        spec = re.search(rf'"{package}\s*([<>=!~][^"]*)"', text)
        assert spec, f"pyproject.toml declares no version for {package}"
        allowed = [v for v in ("2.9.9", "3.16.0", "4.99", floor) if SpecifierSet(spec.group(1)).contains(v)]
        assert all(Version(v) >= Version(floor) for v in allowed), \
            f"pyproject.toml allows {package} {spec.group(1)}, below the floor {floor}"
