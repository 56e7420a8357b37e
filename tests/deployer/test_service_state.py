"""A service's state from the router's status and the replicas' log files (deployer/service_state.py), with
log files written as the local target writes them: only a replica the current operation started can fail
it, and a replaced replica that drained and stopped is never a crash."""

from __future__ import annotations

import time
from pathlib import Path

from openscore.deployer import service_state as st

SERVICE = "svc"
OLD, NEW = "20261202151009-c28e39f5", "20261202151027-bd6705b0"


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t % 1 * 1000):03d}"


def run_lines(t0: float, deployment: str, ending: str, pid: int = 100) -> list[str]:
    """One replica run as `openscore serve` logs it, starting at t0; `ending`: drained, crashed or running."""
    serving = f"/ws/deployments/{SERVICE}/{deployment}/score.py"
    lines = [f"{stamp(t0)} I [{pid}] openscore.supervisor - openscore 0.1.0 serving {serving} (model dir "
             "'azureml-models/m/1'); compatibility modules: azureml",
             f"{stamp(t0 + 0.5)} I [{pid}] openscore.supervisor - Listening on http://127.0.0.1:4000 with 1 "
             "worker(s); liveness GET /healthz, readiness GET /readyz"]
    if ending == "crashed":
        return lines + ["Traceback (most recent call last):", '  File "score.py", line 3, in init',
                        "ValueError: fault_init_error: model could not be loaded",
                        f"{stamp(t0 + 1)} E [{pid + 1}] openscore.supervisor - Worker {pid + 1} failed to boot "
                        "(the entry script or its init() failed, see above); stopping with exit code 3",
                        f"{stamp(t0 + 1.1)} I [{pid}] openscore.supervisor - Server stopped"]
    lines.append(f"{stamp(t0 + 1)} I [{pid + 1}] openscore.worker - Worker {pid + 1} ready: init() took 0.4 s")
    if ending == "drained":
        lines += [f"{stamp(t0 + 2)} I [{pid + 1}] openscore.worker - Worker {pid + 1} draining: 0 request(s) "
                  "in flight, grace 10 s", f"{stamp(t0 + 2.1)} I [{pid}] openscore.supervisor - Server stopped"]
    return lines


def write_log(root: Path, replica: str, *runs: list[str]) -> Path:
    p = root / SERVICE / SERVICE / f"{replica}.log"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join("\n".join(r) + "\n" for r in runs))
    return p


def status(*replicas: tuple[str, str], desired: int = 1) -> dict:
    return {"versions": {SERVICE: {"desiredReplicas": desired, "replicas": [
        {"id": rid, "phase": phase, "outdated": False, "reason": ""} for rid, phase in replicas]}}}


def test_a_replaced_replica_that_drained_during_the_operation_is_not_a_crash(tmp_path):
    """The overwrite bug: the old replica's log is written after the operation began (probe lines, then
    "draining ... Server stopped") and it is no longer listed; with the new replica not yet counted ready
    (a readiness blip, or a scale-up under load) the service was reported Failed (CrashLoopBackOff)."""
    since = time.time()
    write_log(tmp_path, "svc.svc.1", run_lines(since - 60, OLD, "drained")[:-2]
              + run_lines(since + 3, OLD, "drained")[-2:])
    write_log(tmp_path, "svc.svc.2", run_lines(since + 0.5, NEW, "running"))
    for now in (status(("svc.svc.2", "starting")), status(("svc.svc.2", "ready"), desired=2),
                status(("svc.svc.2", "unready"))):
        state, error = st.live_state(st.TRANSITIONING, now, tmp_path, SERVICE, since, {NEW})
        assert (state, error) == (st.TRANSITIONING, None)
    assert st.live_state(st.TRANSITIONING, status(("svc.svc.2", "ready")), tmp_path, SERVICE, since,
                         {NEW}) == (st.HEALTHY, None)


def test_a_replica_this_operation_started_that_crashed_fails_it_with_the_exception(tmp_path):
    since = time.time()
    write_log(tmp_path, "svc.svc.1", run_lines(since - 60, OLD, "drained"))
    write_log(tmp_path, "svc.svc.2", run_lines(since + 0.5, NEW, "crashed"))
    state, error = st.live_state(st.TRANSITIONING, status(("svc.svc.3", "starting")), tmp_path, SERVICE, since,
                                 {NEW})
    assert state == st.FAILED
    message = error["details"][0]["message"]
    assert "init() failed: ValueError: fault_init_error" in message
    assert "1 replica start(s) failed" in message and "svc.svc.2" in message


def test_a_reused_replica_id_counts_only_its_latest_run(tmp_path):
    """After a router restart replica ids start again at 1 and a log is appended to: the latest run decides."""
    since = time.time()
    write_log(tmp_path, "svc.svc.1", run_lines(since - 600, OLD, "drained"), run_lines(since + 1, NEW, "crashed"))
    state, _ = st.live_state(st.TRANSITIONING, status(("svc.svc.2", "starting")), tmp_path, SERVICE, since, {NEW})
    assert state == st.FAILED
    write_log(tmp_path, "svc.svc.1", run_lines(since - 600, OLD, "crashed"), run_lines(since - 300, OLD, "drained"))
    assert st.live_state(st.TRANSITIONING, status(("svc.svc.2", "starting")), tmp_path, SERVICE, since,
                         {NEW}) == (st.TRANSITIONING, None)


def test_a_replica_of_another_deployment_or_one_stopped_normally_is_not_this_operations_crash(tmp_path):
    since = time.time()
    # an old-deployment replica started after `since` (the router re-created it) and then went away
    write_log(tmp_path, "svc.svc.4", run_lines(since + 0.2, OLD, "crashed"))
    # a replica of the new deployment scaled away normally (drained, stopped)
    write_log(tmp_path, "svc.svc.5", run_lines(since + 0.3, NEW, "drained"))
    assert st.live_state(st.TRANSITIONING, status(("svc.svc.6", "starting")), tmp_path, SERVICE, since,
                         {NEW}) == (st.TRANSITIONING, None)
    # without the deployments to compare, time alone decides: the crashed one counts
    state, _ = st.live_state(st.TRANSITIONING, status(("svc.svc.6", "starting")), tmp_path, SERVICE, since)
    assert state == st.FAILED


def test_a_replica_that_crashed_before_logging_a_line_still_fails_the_operation(tmp_path):
    """No timestamped line at all (the interpreter failed before logging started): the file's time decides."""
    since = time.time() - 5
    write_log(tmp_path, "svc.svc.2", ["/usr/bin/python: No module named openscore"])
    state, error = st.live_state(st.TRANSITIONING, status(("svc.svc.3", "starting")), tmp_path, SERVICE, since,
                                 {NEW})
    assert state == st.FAILED and "No module named openscore" in error["details"][0]["message"]


def test_last_run_reads_the_serving_line_and_a_normal_stop(tmp_path):
    assert st.line_time("2026-12-02 15:10:28,591 I [1] x - y") == 1796224228.591
    assert st.line_time("Traceback (most recent call last):") is None
    t0 = 1796224228.0
    path = write_log(tmp_path, "svc.svc.1", run_lines(t0 - 100, OLD, "crashed"), run_lines(t0, NEW, "drained"))
    run = st.last_run(path)
    assert run.started == t0 and run.serving == f"/ws/deployments/{SERVICE}/{NEW}/score.py"
    assert run.stopped_normally
    crashed = st.last_run(write_log(tmp_path, "svc.svc.2", run_lines(t0, NEW, "crashed")))
    assert not crashed.stopped_normally
    running = st.last_run(write_log(tmp_path, "svc.svc.3", run_lines(t0, NEW, "running")))
    assert not running.stopped_normally
