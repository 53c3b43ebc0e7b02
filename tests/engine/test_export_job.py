"""The Export tab's background job: a reloaded page re-attaches to a running export from its job folder alone, and Cancel
stops the child and removes only what the export created (a folder the user had is kept)."""

from __future__ import annotations

from pathlib import Path

from test_export import make_adapter

from studio.engine.access import FULL
from studio.engine.jobs.export import ExportJob, ExportRequest, jobs_dir
from studio.ui.tabs import export as export_tab
from tests.helpers import wait_until, web_context


def test_a_reloaded_page_reattaches_to_the_running_export(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "a", seed=21)
    out = tmp_path / "merged"
    ctx = web_context(tmp_path / "runs")
    started = export_tab.on_export(ctx, str(adapter), "", "cat", 0.5, "model", str(out), "float32", [], False, "en")
    first = next(started)
    folder = Path(first[10])
    assert folder.parent == jobs_dir() and "data-state='running'" in first[0] and first[9]["visible"] is True
    started.close()  # the page is reloaded: its handler and its ExportJob object are gone, the child keeps running

    job = ExportJob.latest()  # a fresh object, from the job folder alone
    assert job is not None and job.folder == folder and job.process is None and job.running()
    frames = list(export_tab.on_load("en"))
    assert "data-state='running'" in frames[0][0] and frames[0][10] == str(folder) and "latest export" in frames[0][1]
    progress, message, command, checks, _, result, log, open_chat, target, cancel, followed = frames[-1]
    assert "data-state='finished'" in progress and message.startswith(f"Saved **{out.resolve()}** (")
    assert result["ok"] and result["out_dir"] == str(out.resolve()) and (out / "export.json").is_file()
    assert "[ 60%]" in log or "60%]" in log  # the progress lines the child wrote, read back from the job folder
    assert open_chat["visible"] is True and cancel["visible"] is False and followed == str(folder)
    state = ExportJob.attach(folder).poll()
    assert state["state"] == "finished" and state["exit_code"] == 0 and state["fraction"] == 1.0
    # the starter's waiter thread writes the exit code just after the child is gone (the poll above may come first)
    wait_until(lambda: (folder / "exit").is_file(), 30, "the waiter's exit file")
    (folder / "exit").unlink()  # the child is gone, its exit code not written (yet, or the studio was restarted)
    state = ExportJob.attach(folder).poll()
    assert state["state"] == "finished" and state["exit_code"] == 0 and state["result"]["out_dir"] == str(out.resolve())
    assert ExportJob.attach(folder).cancel() == {"cancelled": False, "removed": []}  # an ended export is left alone
    assert (out / "export.json").is_file()


def test_cancel_stops_the_child_and_removes_only_what_it_created(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "a", seed=22)
    new_out, kept = tmp_path / "new" / "out", tmp_path / "kept"
    kept.mkdir()  # an empty folder the user made for it: an export may fill it, a cancel must not delete it
    jobs = {o: ExportJob.start(ExportRequest(sources=[str(adapter)], out_dir=str(o)), access=FULL)
            for o in (new_out, kept)}
    for out, job in jobs.items():  # cancel once the child has made its work folder beside the output
        work = wait_until(lambda: list(out.parent.glob(f".{out.name}.export-*")), 90, "the export's work folder")
        assert work == [out.parent / f".{out.name}.export-{job.pid}"]
        message, button = export_tab.on_cancel(str(job.folder), "en")  # from a fresh handler: only the folder is known
        assert message.startswith("**Export cancelled") and str(work[0]) in message and button["visible"] is False
        assert job.process.wait(timeout=5) is not None and not job.running()
        state = ExportJob.attach(job.folder).poll()
        assert state["state"] == "cancelled" and "data-state='failed'" in export_tab.progress_bar(state, "en")
        assert not list(out.parent.glob(f".{out.name}.export-*"))
    assert not (tmp_path / "new").exists()  # the output and the parent the export created are gone
    assert kept.is_dir() and not any(kept.iterdir())  # the user's folder stays
    assert "没有正在运行的导出" in export_tab.on_cancel(str(jobs[kept].folder), "zh")[0]
