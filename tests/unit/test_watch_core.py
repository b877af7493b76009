import pytest

from components.watch.core import decide
from pipelines.schedule import recurring_run_spec, submit_recurring_run, write_spec

NOW = {"data_version": "d2", "teacher_version": "t1", "config_hash": "c1"}


def test_nothing_changed_means_no_rerun():
    decision = decide(NOW, dict(NOW, mlflow_run_id="x"))
    assert not decision.rerun and "nothing changed" in decision.reasons[0]


def test_every_changed_version_is_a_reason():
    decision = decide(NOW, {"data_version": "d1", "teacher_version": "t0", "config_hash": "c1"})
    assert decision.rerun
    assert decision.reasons == ("data_version changed: champion has d1, now d2",
                                "teacher_version changed: champion has t0, now t1")


def test_no_champion_means_rerun_and_bad_input_is_named():
    assert decide(NOW, None).reasons == ("no champion in the registry yet",)
    with pytest.raises(ValueError, match="lack \\['config_hash'\\]"):
        decide({"data_version": "d", "teacher_version": "t"}, {})


class FakeClient:
    """Stands in for kfp.Client (no cluster in tests): records the call."""

    def create_experiment(self, name):
        self.experiment = name
        return type("E", (), {"experiment_id": "exp-1"})()

    def create_recurring_run(self, **kwargs):
        self.kwargs = kwargs
        return "job"


def test_recurring_run_spec_round_trips_into_a_kfp_call(tmp_path):
    with pytest.raises(ValueError, match="6 fields"):
        recurring_run_spec({}, cron="0 */6 * * *")
    spec = write_spec(recurring_run_spec({"home": "/h"}), tmp_path / "spec.yaml")
    client = FakeClient()
    assert submit_recurring_run(client, spec, tmp_path / "watch_pipeline.yaml") == "job"
    assert client.kwargs["cron_expression"] == "0 0 */6 * * *" and client.kwargs["max_concurrency"] == 1
    assert client.kwargs["no_catchup"] is True and client.kwargs["params"] == {"home": "/h"}
    assert client.kwargs["experiment_id"] == "exp-1"
