"""The data position (epoch, position, tokens_seen) travels with the run: the checkpoint's meta, the manifest, the
leg status, and `relaytrain status`."""

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.data import open_dataset, position
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.report.status import format_status, run_status
from relaytrain_runtime.report.view import load_run
from relaytrain_runtime.store import open_store


def test_a_leg_records_its_data_position_in_the_baton_and_its_status(tiny_run):
    url = tiny_run(steps=12, batch_size=8, seq_len=32)
    status = run_leg(url, max_steps=5, threads=1)
    baton = Baton(open_store(url))
    spec = baton.spec()
    expected = position(spec, 5, open_dataset(baton.store, spec))
    assert expected["tokens_seen"] == 5 * 8 * 32
    assert status["data"] == expected
    commit = baton.latest()
    assert commit["data"] == {"next_step": 5, **expected}
    assert baton.load(commit)["meta"]["data"] == expected
    shown = run_status(load_run(url))
    assert shown["data"] == expected
    assert f"epoch {expected['epoch']} (window {expected['position']:,})" in format_status(shown)
