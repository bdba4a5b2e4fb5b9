"""The dev server: `python3 -m pricing.server [--port 8080]`.

GET /health answers `ok`; GET /quote?cents=2000&percent=15 answers the discounted price as JSON.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from pricing.discount import apply_discount


class Handler(BaseHTTPRequestHandler):
    quiet = False

    def log_message(self, fmt, *args):
        if not self.quiet:
            super().log_message(fmt, *args)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            return self.send(200, "text/plain", b"ok\n")
        if url.path == "/quote":
            q = parse_qs(url.query)
            try:
                cents, percent = int(q["cents"][0]), int(q.get("percent", ["0"])[0])
                body = {"cents": cents, "percent": percent, "total": apply_discount(cents, percent)}
            except (KeyError, ValueError) as e:
                return self.send(400, "application/json", json.dumps({"error": str(e)}).encode())
            return self.send(200, "application/json", json.dumps(body).encode() + b"\n")
        return self.send(404, "text/plain", b"not found\n")

    def send(self, status, kind, body):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port, host="127.0.0.1", quiet=False):
    """A server on `port` (0: any free one), not yet serving; `quiet` drops the access log."""
    handler = type("QuietHandler", (Handler,), {"quiet": True}) if quiet else Handler
    return ThreadingHTTPServer((host, port), handler)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    server = serve(a.port, a.host)
    print(f"serving on http://{a.host}:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
