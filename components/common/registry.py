"""The one module that talks to MLflow: tracking runs, the model registry, aliases, downloads.

Models are logged with the transformers flavor (safetensors + config + tokenizer, no pickle), with
a README.md model card and the base model's LICENSE.txt beside MLmodel. The flavor keeps the
tokenizer apart from the weights (``model/``, ``components/tokenizer/``); ``_flatten`` makes them one
Hugging Face folder (what ``distillops export`` writes, common/export.py)::

    distillops export --model models:/distillops-student@champion --out ./student
    transformers.pipeline("text-classification", model="./student")

A causal LM (a generative teacher or student) is logged the same way as ``text-generation``
(``tracking.log_lm_model``); the same checks, flattening and export apply.

The same client code talks to the embedded sqlite store and to an ``mlflow server``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.home import Home
from components.common.io import atomic_dir
from components.common.model_card import CARD_FILE, LICENSE_FILE
from components.common.paths import UnsafeNameError, safe_name, within
from components.common.relocation import relocate_mlflow_store

EXPERIMENT = "distillops"
# Requirements recorded with each logged model; the flavor's inference would add torchvision.
MODEL_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.*", "safetensors"]
# Where registered versions may come from. The client checks each source against the artifact root
# (ARTIFACT_ROOT_ENV, else the distillops experiment's artifact location) before calling MLflow; a
# tracking server checks again with this regex (MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX,
# infra/k8s/base/mlflow.yaml): its proxied artifact root, or a ledger entry (which has no artifacts).
ARTIFACT_ROOT_ENV = "DISTILLOPS_ARTIFACT_ROOT"
SERVER_SOURCE_REGEX = (r"^(?!.*(\.\.|%|#|\\|\x00))"
                       r"(mlflow-artifacts:/[^/]|distillops-ledger://[A-Za-z0-9][A-Za-z0-9._+-]*/entry$)")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]{32})$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """A registry reference that cannot be resolved, or a registry change that was refused."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        m = _MODELS_URI.match(uri)
        if not m:
            raise RegistryError(f"{uri!r} is not a registry reference; expected models:/<name>@<alias> "
                                f"or models:/<name>/<version>")
        if m["alias"] is not None:
            safe_name(m["alias"], "alias")
        return cls(safe_name(m["name"], "model name"), m["alias"], m["version"])


def is_registry_uri(ref: str) -> bool:
    return ref.startswith("models:/")


def connect(home: Home):
    """Point MLflow at the home's tracking store; make sure the experiment exists. Returns a client."""
    import mlflow

    home.ensure()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if home.tracking_uri == home.own_tracking_uri:  # the home's own sqlite store: it may have been moved
        relocate_mlflow_store(home.root, EXPERIMENT)
    mlflow.set_tracking_uri(home.tracking_uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(EXPERIMENT) is None:
        try:
            # A file URI under the home: sqlite's default (./mlruns beside the cwd) would scatter state.
            # A tracking server stores artifacts itself (proxied to its object store): a local path
            # here would send every pod's artifacts to its own disk.
            served = home.tracking_uri.startswith(("http://", "https://"))
            client.create_experiment(EXPERIMENT, artifact_location=None if served else home.mlflow_artifacts.as_uri())
        except Exception:  # created by a concurrent step in between
            if client.get_experiment_by_name(EXPERIMENT) is None:
                raise
    mlflow.set_experiment(EXPERIMENT)
    return client


def get_version(client, ref: ModelRef):
    """The ModelVersion a reference points to, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, ref.version)
    except MlflowException:
        return None


def download_model(client, home: Home, ref: ModelRef) -> tuple[Path, Any]:
    """Download a registered model into one flat directory (weights, config, tokenizer).

    Cached per name and version under ``<home>/models``; returns (directory, ModelVersion).
    """
    import mlflow

    mv = get_version(client, ref)
    if mv is None:
        raise RegistryError(f"models:/{ref.name}{'@' + ref.alias if ref.alias else '/' + str(ref.version)} "
                            f"is not in the registry at {home.tracking_uri}")
    dest = within(home.root, home.root / "models" / f"{safe_name(mv.name, 'model name')}-v{int(mv.version)}")
    if (dest / "config.json").is_file():
        return dest, mv
    src = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{mv.name}/{mv.version}"))
    check_model_artifact(src, f"models:/{mv.name}/{mv.version}")
    with atomic_dir(dest) as staging:
        _flatten(src, staging, f"models:/{mv.name}/{mv.version}")
    return dest, mv


# What a logged model says about itself (tracking.log_model writes them beside MLmodel); a flattened
# model directory carries them too, so it is a complete Hugging Face folder.
DESCRIBING_FILES = (CARD_FILE, LICENSE_FILE)


def _flatten(src: Path, dest: Path, uri: str) -> Path:
    """The transformers flavor's layout (model/, components/tokenizer/) and the logged model's card
    and license (DESCRIBING_FILES) as one model directory.

    A symlink among the artifacts (to /etc/passwd, a key file) would be copied as its target: refused
    before anything is copied; each copied name is checked as one safe path segment."""
    members = [f for sub in ("model", "components/tokenizer") for f in sorted((src / sub).glob("*"))]
    members += [src / n for n in DESCRIBING_FILES if (src / n).exists() or (src / n).is_symlink()]
    linked = [str(f.relative_to(src)) for f in members if f.is_symlink()]
    if linked:
        raise RegistryError(f"{uri}: the downloaded artifacts hold symlink member(s) "
                            f"{', '.join(linked)}; refused (a registered model is regular files only)")
    for f in members:
        if f.is_file():
            shutil.copy2(within(src, f), dest / safe_name(f.name, "artifact file name"))
    return dest


def fetch_version_files(name: str, version: str, dest: Path) -> Path:
    """Download version `version` of `name` afresh (never from the home's cache) under `dest`, as
    one model directory (weights, config, tokenizer); returns it. For checking what is registered."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        src = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                       dst_path=str(dest / "download")))
    except MlflowException as exc:
        raise RegistryError(f"models:/{name}/{version}: cannot download its artifact: {exc}") from None
    check_model_artifact(src, f"models:/{name}/{version}")
    flat = dest / "model"
    flat.mkdir()
    return _flatten(src, flat, f"models:/{name}/{version}")


# What a registered model may be: the transformers flavor as log_model writes it, nothing that
# runs code when loaded (a pickle flavor, a custom loader_module, bundled code/).
ALLOWED_FLAVORS = {"transformers", "python_function"}
ALLOWED_LOADER = "mlflow.transformers"


def check_model_artifact(src: Path, uri: str) -> None:
    """Refuse a downloaded model whose MLmodel is not the plain transformers flavor (before any file of it
    is used): only the allowlisted flavors, loader module and safetensors weights pass."""
    import yaml

    # A symlink among the artifacts (to /etc/passwd, a key file) would be read or copied as its target.
    linked = sorted(str(f.relative_to(src)) for f in src.rglob("*") if f.is_symlink())
    if linked:
        raise RegistryError(f"{uri}: the downloaded artifacts hold symlink member(s) {', '.join(linked)}; "
                            "refused (a registered model is regular files only)")
    mlmodel = src / "MLmodel"
    if not mlmodel.is_file():
        raise RegistryError(f"{uri}: no MLmodel file; expected a model logged with the transformers flavor")
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    problems = [f"flavor {f!r} is not allowed" for f in sorted(set(flavors) - ALLOWED_FLAVORS)]
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module", ALLOWED_LOADER) != ALLOWED_LOADER:
        problems.append(f"python_function loader_module {pyfunc['loader_module']!r} is not {ALLOWED_LOADER!r}")
    for key in ("code", "python_model", "pickled_model", "cloudpickle_version"):
        if any(conf.get(key) for conf in flavors.values() if isinstance(conf, dict)):  # a logged model has code: null
            problems.append(f"flavor configuration names {key!r}")
    if (src / "code").exists():
        problems.append("the model bundles a code/ directory")
    pickles = sorted(str(p.relative_to(src)) for p in src.rglob("*")
                     if p.suffix in (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt"))
    if pickles:
        problems.append(f"pickle-format files {pickles}")
    if "transformers" not in flavors:
        problems.append("no transformers flavor")
    if problems:
        raise RegistryError(f"{uri}: refused, it could run code when loaded: {'; '.join(problems)} "
                            f"({mlmodel}). Only models logged with the transformers flavor (safetensors) are used.")


def allowed_source_root(client) -> str:
    """The artifact root registered sources must lie under: $DISTILLOPS_ARTIFACT_ROOT (a cluster sets
    mlflow-artifacts:/), else the distillops experiment's artifact location."""
    root = os.environ.get(ARTIFACT_ROOT_ENV, "").strip()
    if not root:
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise RegistryError(f"no experiment {EXPERIMENT!r} and no ${ARTIFACT_ROOT_ENV}: cannot tell where "
                                "registered models may come from (run registry.connect first)")
        root = exp.artifact_location
    return root


def check_source(source: str, root: str) -> str:
    """`source` if it lies under the artifact root `root`; else RegistryError naming both."""
    from urllib.parse import urlparse

    why = None
    if any(bad in source for bad in ("..", "%", "#", "\\", "\x00")):
        why = "it contains '..', '%', '#', '\\' or NUL"
    elif urlparse(source).scheme != urlparse(root).scheme:
        why = f"its scheme is not {urlparse(root).scheme or 'a path'}"
    elif urlparse(root).scheme == "file":
        try:
            within(urlparse(root).path, urlparse(source).path)
        except UnsafeNameError:
            why = "it resolves outside the root"
    elif not (source == root or source.startswith(root.rstrip("/") + "/")):
        why = "it is not under the root"
    if why:
        raise RegistryError(f"refusing to register a model version from {source!r}: {why}; registered sources "
                            f"must lie under the artifact root {root!r} (${ARTIFACT_ROOT_ENV} or the "
                            f"{EXPERIMENT!r} experiment's artifact location)")
    return source


# MLflow's HTTP client retries every method on a 500, a 503 or a timeout (urllib3, allowed_methods=None),
# a create too: when the server committed the create and only its answer was lost, that retry
# creates a second version (a second ledger entry, which the fold then rejects). Creates therefore
# go out once, and the callers below re-read (by weights digest, by attempt id) before sending again.
_CREATE_ATTEMPTS = 5


@contextmanager
def _sent_once() -> Iterator[None]:
    """No transport-level retry for the requests made inside (MLflow reads the setting per request).
    Process-wide while it lasts: distillops makes its registry calls from one thread."""
    key = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    before = os.environ.get(key)
    os.environ[key] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _backoff(attempt: int) -> None:
    time.sleep(min(0.5 * 2 ** attempt, 8.0))


def register(client, model_uri: str, name: str, tags: dict[str, str], key: str = "model_digest",
             description: str | None = None):
    """Create a registry version with its lineage tags; the tags are set before it is returned.

    `model_uri` is a logged model (``models:/m-<id>``, what ``tracking.log_model`` returns): the
    version's source is that model's artifact location, checked against the artifact root here,
    before MLflow is called, and by a tracking server again. A create whose outcome is unknown (an
    error after the server may have committed it) is followed by a re-read by the `key` tag: a
    version found there is returned, not created twice.
    """
    from mlflow.exceptions import MlflowException

    safe_name(name, "model name")
    logged = _LOGGED_MODEL_URI.match(model_uri)
    run_id = model_id = None
    source = model_uri
    if logged:
        model = client.get_logged_model(logged["model_id"])
        source, run_id, model_id = model.artifact_location, model.source_run_id, model.model_id
    check_source(source, allowed_source_root(client))
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="Registered by distillops")
        except MlflowException:  # created concurrently
            pass
    tags = {k: str(v) for k, v in tags.items()}
    last: Exception | None = None
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with _sent_once():
                return client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id,
                                                   description=description)
        except MlflowException as exc:
            last = exc
            found = find_versions(client, name, key, tags[key]) if tags.get(key) else []
            if found:
                log.info("version %s of %s holds these weights already (a create answered with an error)",
                         found[0].version, name)
                return found[0]
            _backoff(attempt)
    raise RegistryError(f"could not register a version of {name} after {_CREATE_ATTEMPTS} attempts: {last}")


def set_alias(client, name: str, alias: str, version: str) -> None:
    _idempotent_write(lambda: client.set_registered_model_alias(name, alias, str(version)))


def find_versions(client, name: str, tag: str, value: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    return sorted((v for v in versions if v.tags.get(tag) == value), key=lambda v: int(v.version))


# ---------------------------------------------------------------------------------------------
# The promotion ledger: an append-only sequence of promotion / rollback / refusal records.
#
# MLflow has no compare-and-set on aliases, but the registry database does hand out model version
# numbers atomically: (name, version) is the primary key, and a version is max+1 of the committed
# ones, so concurrent creations get distinct, gap-free numbers whichever process and whichever
# server worker they go through. Each record is therefore a model version of a companion
# registered model ("<name>-ledger") whose number is its position in one total order. Every
# process folds the same ordered records to the same champion (see promote/core.py); aliases are
# a materialised view of that fold. docs/promotion.md explains the protocol.
# ---------------------------------------------------------------------------------------------

LEDGER_SUFFIX = "-ledger"
# Model version tag values are limited (5000 characters in MLflow's stores); records stay below.
MAX_RECORD_CHARS = 4800


def ledger_name(name: str) -> str:
    return f"{name}{LEDGER_SUFFIX}"


def _ensure_registered_model(client, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description=description)
        except MlflowException:  # created concurrently: the unique name is the guarantee
            client.get_registered_model(name)


def append_ledger(client, name: str, record_json: str, attempts: int = 5) -> int:
    """Append one record (canonical JSON) to the ledger of `name`; returns its sequence number.

    The record is a tag set in the same create call as the version: there is no moment at which
    the entry exists without its content. A create that lost a race for a number is retried; a
    create whose response was lost is detected by the record's attempt id (no duplicate entry).
    """
    import json as _json

    from mlflow.exceptions import MlflowException

    if len(record_json) > MAX_RECORD_CHARS:
        raise RegistryError(f"ledger record of {len(record_json)} characters exceeds {MAX_RECORD_CHARS}")
    ledger = ledger_name(name)
    _ensure_registered_model(client, ledger, f"Promotion ledger of {name} (written by distillops; do not edit)")
    attempt_id = _json.loads(record_json).get("attempt_id")
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with _sent_once():
                mv = client.create_model_version(ledger, f"distillops-ledger://{name}/entry",
                                                 tags={"record": record_json},
                                                 description="distillops promotion ledger entry")
            return int(mv.version)
        except MlflowException as exc:
            last = exc
            for seq, rec, _tags in read_ledger(client, name):
                if attempt_id and rec.get("attempt_id") == attempt_id:
                    return seq
            if attempt:  # the first retry is immediate: a lost race for a version number
                _backoff(attempt)
    raise RegistryError(f"could not append to the ledger of {name}: {last}")


def read_ledger(client, name: str) -> list[tuple[int, dict, dict[str, str]]]:
    """Every ledger entry of `name` in order: (sequence number, record, all tags)."""
    import json as _json

    from mlflow.exceptions import MlflowException

    versions, token = [], None
    try:
        while True:
            page = client.search_model_versions(f"name = '{ledger_name(name)}'", max_results=1000,
                                                page_token=token)
            versions += list(page)
            token = page.token
            if not token:
                break
    except MlflowException:
        return []
    out = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        tags = dict(v.tags)
        try:
            record = _json.loads(tags.get("record", ""))
        except ValueError:
            record = {"unreadable": tags.get("record", "")}
        out.append((int(v.version), record, tags))
    return out


def _idempotent_write(write, attempts: int = 6) -> None:
    """Retry a write that several processes may make at once with the same value.

    Two upserts of the same tag or alias race inside the server's database and one can fail with
    a uniqueness error although the value it wanted is then in place; writing again settles it.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            write()
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def tag_ledger_entry(client, name: str, seq: int, tags: dict[str, str]) -> None:
    for k, v in tags.items():
        _idempotent_write(lambda k=k, v=v: client.set_model_version_tag(ledger_name(name), str(seq), k, str(v)))


def get_aliases(client, name: str) -> dict[str, str]:
    """alias -> version of a registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def delete_alias(client, name: str, alias: str) -> None:
    client.delete_registered_model_alias(name, alias)


def set_model_tag(client, name: str, key: str, value: str) -> None:
    # The first record of a model (a refusal before any version exists) may precede the model itself.
    _ensure_registered_model(client, name, "Registered by distillops")
    _idempotent_write(lambda: client.set_registered_model_tag(name, key, str(value)))


def delete_version(client, name: str, version: str) -> None:
    client.delete_model_version(name, str(version))


def get_model_tag(client, name: str, key: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name).tags.get(key)
    except MlflowException:
        return None
