"""KFP interface of watch: the first task of the recurring watch pipeline."""

from typing import NamedTuple

from kfp import dsl

from components.common.image import IMAGE


class Changes(NamedTuple):
    changed: bool
    data_fingerprint: str
    teacher_ref: str
    teacher_version: str
    reasons: str


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def check_for_changes(home: str, data_path: str, teacher_ref: str, config_json: str) -> Changes:
    """Compare the data version and the teacher alias's version with the champion's lineage.

    `config_json` is the whole resolved config (its hash is compared with the champion's too).
    """
    import json
    from typing import NamedTuple

    from components.common.config import config_from_json
    from components.common.hashing import sha256_file
    from components.common.home import Home
    from components.watch.runner import check

    decision = check(Home.resolve(home).ensure(), config_from_json(config_json), data_path, teacher_ref)
    class Out(NamedTuple):  # the body runs alone in the container: the return type is redefined here
        changed: bool
        data_fingerprint: str
        teacher_ref: str
        teacher_version: str
        reasons: str

    return Out(decision.rerun, sha256_file(data_path), decision.current["teacher_ref"],
               decision.current["teacher_version"], json.dumps(list(decision.reasons)))
