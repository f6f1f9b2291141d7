"""What the two dask campaigns share: a cluster of ``cluster_workers`` workers, and a
token in the environment of every process they start (see ``process_groups``)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

from fault_tools.campaign import Campaign
from fault_tools.process_groups import TOKEN_VARIABLE, new_token, start_in_session


class DaskCampaign(Campaign):
    """A ``Campaign`` whose runs use a dask cluster and carry the campaign's token."""

    def __init__(self, *args: Any, cluster_workers: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster_workers = cluster_workers
        self.token = new_token()

    def _env(self) -> dict[str, str]:
        return {**super()._env(), TOKEN_VARIABLE: self.token}

    def _start_on_cluster(
        self, out: Path, *cluster: str, stdout: int = subprocess.DEVNULL
    ) -> subprocess.Popen[str]:
        """The generate command with the ``cluster`` options and no loader workers."""
        command = dataclasses.replace(self.setup, workers=0).command(out, *cluster)
        return start_in_session(command, self._env(), stdout=stdout)
