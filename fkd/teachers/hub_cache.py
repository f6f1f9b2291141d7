"""Where timm's pretrained weights are: the local cache, or a hub that answers in time.

Weights already in the local cache are loaded from there without asking the hub; weights
that are not are refused at once when the hub cannot be reached (instead of after a
minute of the hub client's retries).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from fkd.teachers.errors import TeacherError

__all__ = ["HUB_PROBE_TIMEOUT_S", "TIMM_HUB_FILES", "timm_cached_weights"]

TIMM_HUB_FILES = ["model.safetensors", "pytorch_model.bin"]  # timm's hub files, in its order
HUB_PROBE_TIMEOUT_S = 3.0


def timm_cached_weights(name: str, spec: str) -> Path | None:
    """The locally cached file of timm's pretrained weights for ``name``, else ``None``.

    ``None`` also when timm should fetch them: the hub answers, or timm names no
    source fkd knows. Not cached and the hub unreachable (or HF_HUB_OFFLINE set): a
    ``TeacherError`` saying how to get the weights.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or cfg.file:
        return None
    offline = False
    hub = _huggingface_hub()
    if cfg.hf_hub_id and hub is not None:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else TIMM_HUB_FILES
        for file in files:
            found = hub.try_to_load_from_cache(cfg.hf_hub_id, file)
            if isinstance(found, str):
                return Path(found)
        constants = hub.constants
        source, cache = f"{constants.ENDPOINT}/{cfg.hf_hub_id}", Path(constants.HF_HUB_CACHE)
        offline = bool(constants.HF_HUB_OFFLINE)
    elif isinstance(cfg.url, str) and cfg.url:
        file_name = os.path.basename(urlparse(cfg.url).path)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        if cached.is_file():
            return cached
        source, cache = cfg.url, cached.parent
    else:
        return None
    reason = "HF_HUB_OFFLINE is set" if offline else _unreachable(source)
    if reason is None:
        return None
    raise TeacherError(
        f"timm's pretrained weights for {spec!r} are not in the local cache ({cache}) and "
        f"cannot be downloaded ({reason}); fetch them where there is network (python -c "
        f"\"import timm; timm.create_model('{name}', pretrained=True)\") and copy {cache} "
        "here, or pass --weights FILE"
    )


def _huggingface_hub() -> Any:
    """The huggingface_hub module, or None (timm then fetches from the weights' URL)."""
    try:
        import huggingface_hub
    except ImportError:
        return None
    return huggingface_hub


def _unreachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why ``url``'s host (or the proxy for it) does not answer within ``timeout`` s, or None.

    One TCP connection, made in a daemon thread so that a slow name lookup cannot
    hold the caller longer than ``timeout`` either.
    """
    import socket
    import threading
    import urllib.request

    target = urlparse(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urlparse(proxy)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    failure: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            failure.append(f"{host}:{port}: {exc.strerror or exc}")

    probe = threading.Thread(target=connect, name="fkd-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        return f"{host}:{port}: no answer within {timeout:g} s"
    return failure[0] if failure else None
