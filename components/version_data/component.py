"""KFP interface of version_data."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def version_data(home: str, data_path: str, data_fingerprint: str, config_json: str,
                 dataset: Output[Dataset]) -> str:
    """Validate a labelled text file, split it by hash, DVC-version it; returns data_version.

    `data_fingerprint` (sha256 of the source file) is unused by the body: it makes KFP's cache key
    change when the file's content changes under the same path.
    """
    from components.common.config import config_from_json
    from components.version_data.runner import run

    summary = run(home=home, data_path=data_path, cfg=config_from_json(config_json), snapshot_out=dataset.path)
    dataset.metadata.update(summary)
    return summary["data_version"]
