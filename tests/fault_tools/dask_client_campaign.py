"""The kill/resume campaign with ``fkd generate --cluster local:K`` as the run: each kill
takes the client and its LocalCluster workers, and none of them may outlive it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fault_tools.campaign_result import CampaignResult
from fault_tools.dask_campaign import DaskCampaign
from fault_tools.process_groups import orphans_after, tagged_processes


class DaskClientCampaign(DaskCampaign):
    """The kill/resume campaign with ``fkd generate --cluster local:K`` as the run.

    Each kill is a SIGKILL of the run's whole process group: the client and the
    LocalCluster worker processes it spawned.  After each kill every process that
    carried the campaign's token in its environment must be gone within ``grace``
    seconds (an orphan is counted, reported and killed).  The same checks as the
    single-process campaign follow; the reference is an unkilled ``--cluster`` run.
    """

    runner = "dask-client"

    def __init__(self, *args: Any, grace: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grace = grace
        self.group_sizes: list[int] = []  # processes in each killed group
        self._orphans: list[str] = []

    def _start(self, out: Path, workers: int) -> subprocess.Popen[str]:
        return self._start_on_cluster(out, "--cluster", f"local:{self.cluster_workers}")

    def run(self, kills: int, seconds: float | None = None) -> CampaignResult:
        result = super().run(kills, seconds)
        result.runner = self.runner
        result.processes_killed = sum(self.group_sizes)
        result.orphans = len(self._orphans)
        result.problems.extend(self._orphans)
        return result

    def _kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL the client's process group; none of its processes may survive it."""
        group = {process.pid, *(p.pid for p in tagged_processes(self.token))}
        super()._kill(process)
        self.group_sizes.append(len(group))
        for orphan in orphans_after(self.token, self.grace):
            self._orphans.append(
                f"process {orphan.pid} ({'in' if orphan.pid in group else 'not in'} the "
                f"group seen before the kill) outlived its killed client"
            )
