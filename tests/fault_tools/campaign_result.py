"""The figures of a kill/resume campaign, and the report lines printed from them."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class CampaignResult:
    """The figures of a kill/resume campaign (see ``Campaign``)."""

    kills: int = 0
    runs: int = 0
    episodes: int = 0
    kills_before_first_commit: int = 0
    blocks_redone: int = 0
    bytes_redone: int = 0
    torn_blocks: int = 0
    blocks_lost: int = 0
    mismatches: int = 0
    refused_reads: int = 0
    debris_files: int = 0
    debris_bytes: int = 0
    verify_failures: int = 0
    seconds: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)
    runner: str = "local"
    processes_killed: int = 0
    orphans: int = 0
    kills_mid_block: int = 0
    failed_runs: int = 0
    workers_not_back: int = 0

    def lines(self) -> list[str]:
        if self.runner == "dask-worker":
            what = (
                f"kills survived: {self.kills} dask worker processes SIGKILLed "
                f"({self.kills_mid_block} holding a block) in {self.runs} runs; "
                f"{self.episodes} stores finished"
            )
        else:
            what = (
                f"kills survived: {self.kills} (in {self.runs} runs, {self.episodes} stores "
                f"finished; {self.kills_before_first_commit} before the run's first commit)"
            )
        dask = []
        if self.runner == "dask-client":
            dask.append(
                f"processes killed with the client's process group: {self.processes_killed} "
                f"(client and LocalCluster workers); orphans left alive: {self.orphans}"
            )
        if self.runner == "dask-worker":
            dask.append(
                f"runs ended by KilledWorker (a block lost with its worker more than "
                f"allowed-failures times), then resumed: {self.failed_runs}; "
                f"orphans left alive: {self.orphans}; runs started with a killed worker "
                f"not back after 120 s: {self.workers_not_back}"
            )
        return [
            what,
            *dask,
            f"bytes redone: {self.bytes_redone} (chunk files of {self.blocks_redone} "
            f"uncommitted blocks found on disk after a kill, rewritten by the resume; "
            f"{self.torn_blocks} of them torn, i.e. only some arrays written)",
            f"blocks lost: {self.blocks_lost}",
            f"mismatches: {self.mismatches}",
            f"reads of uncommitted blocks refused: {self.refused_reads}; "
            f"finished stores failing verify: {self.verify_failures}",
            f"most debris seen after a kill: {self.debris_files} files, {self.debris_bytes} "
            "bytes (zarr *.partial temporaries, fkd .creating-PID staging folders)",
            f"wall: {self.seconds:.0f} s",
        ]
