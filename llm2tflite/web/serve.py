"""Serve the demo pages on 127.0.0.1: ``python -m llm2tflite serve [DIR] [--port N]``.

LiteRT.js needs http (no file://), the right MIME types (``application/wasm`` for streaming
compilation, JavaScript for modules) and, for its threaded build, a cross-origin isolated page:
``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``
on every response. Standard library only; local use, not a production server.
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path

DEFAULT_DIR = "results/reports/default/web"
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".tflite": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self):
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        # Rebuilt pages must not be mixed with cached files of an earlier build.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def copyfile(self, source, outputfile):
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):
            # The browser stopped reading: app.js checks that the model file exists by starting
            # its download and cancelling it.
            pass

    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        if self.server.verbose:
            super().log_message(format, *args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    verbose = False


def make_server(directory, port: int = 0, verbose: bool = False) -> Server:
    """A server of ``directory`` on 127.0.0.1 (port 0: any free port); not yet serving."""
    handler = functools.partial(Handler, directory=str(directory))
    server = Server(("127.0.0.1", port), handler)
    server.verbose = verbose
    return server


def page_names(directory) -> list[str]:
    return sorted(p.parent.name for p in Path(directory).glob("*/page.json"))


def serve(directory=DEFAULT_DIR, port: int = 8000, verbose: bool = False) -> int:
    directory = Path(directory)
    if not directory.is_dir():
        print(
            f"llm2tflite: error: {directory} is not a directory; build the pages first "
            "(snakemake builds results/reports/<config>/web/)",
            file=sys.stderr,
        )
        return 2
    try:
        server = make_server(directory, port, verbose)
    except OSError as error:
        print(f"llm2tflite: error: port {port}: {error.strerror}", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"serving {directory} at {url}", flush=True)
    for name in page_names(directory):
        print(f"  {url}{name}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
