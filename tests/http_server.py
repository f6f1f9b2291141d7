"""A real HTTP file server on 127.0.0.1 for the tests that read over HTTP.

It is Python's ``http.server`` plus single byte ranges (``Range: bytes=a-b``, ``a-``,
``-n``), as every static file server and object store answers them: zarr reads the
inner chunks of a shard with ranged requests (``python -m http.server`` alone
ignores the header and sends the whole file).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free port; yields ``http://127.0.0.1:PORT``."""
    server = subprocess.Popen(
        [sys.executable, "-u", __file__, str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = re.search(r"port (\d+)", server.stdout.readline())
        assert port, "the HTTP server did not report its port"
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        server.terminate()
        server.wait(timeout=10)


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` answering a single byte range with 206."""

    def send_head(self) -> Any:
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        match = RANGE.match(header.strip()) if header else None
        if match is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        first, last = match.groups()
        if first:
            start, stop = int(first), min(int(last) + 1, size) if last else size
        else:
            start, stop = max(size - int(last or 0), 0), size
        if start >= stop:
            self.send_error(416, "Requested Range Not Satisfiable")
            return None
        file = open(path, "rb")  # noqa: SIM115 (closed by copyfile's caller)
        file.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.remaining = stop - start
        return file

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(remaining))
        self.remaining = None

    def log_message(self, format: str, *args: Any) -> None:  # quiet, as the tests want
        pass


if __name__ == "__main__":
    handler = partial(RangeRequestHandler, directory=sys.argv[1])
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        print(f"Serving HTTP on 127.0.0.1 port {httpd.server_address[1]}", flush=True)
        httpd.serve_forever()
