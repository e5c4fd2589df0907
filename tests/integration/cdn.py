# SPDX-License-Identifier: Apache-2.0
"""A stand-in for a registry's blob CDN: serves a directory (docker-registry's storage root, so
the redirect middleware's URLs resolve to the blob files) over plain HTTP on a loopback address
of its own (127.0.0.2 by default, a different host for curl than the registry's 127.0.0.1), and
records every request with all its headers."""

import json
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class CdnServer:
    def __init__(self, root, log_path, host="127.0.0.2", port=0):
        self.root = root
        self.log_path = log_path
        self._lock = threading.Lock()
        self._log = []
        open(log_path, "w").close()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):  # quiet: our own log is the record
                pass

            def _record(self):
                entry = {"method": self.command, "path": self.path,
                         "headers": [[k, v] for k, v in self.headers.items()]}
                with server._lock:
                    server._log.append(entry)
                    with open(server.log_path, "a") as f:
                        f.write(json.dumps(entry) + "\n")

            def do_GET(self):
                self._record()
                super().do_GET()

            def do_HEAD(self):
                self._record()
                super().do_HEAD()

        self._httpd = ThreadingHTTPServer((host, port), partial(Handler, directory=root))
        self._httpd.daemon_threads = True
        self.host = host
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def requests(self):
        """Every request so far: dicts with method, path and headers ([name, value] pairs)."""
        with self._lock:
            return list(self._log)

    @staticmethod
    def header(entry, name):
        """Every value of header `name` (case-insensitive) in a logged request."""
        return [v for k, v in entry["headers"] if k.lower() == name.lower()]

    def blob_url_path(self, digest):
        """The path the redirect middleware sends a blob GET to (distribution 2.8: scheme and host
        of baseurl + the filesystem driver's path)."""
        hexd = digest.split(":", 1)[1]
        return f"/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"

    def has_file_for(self, digest):
        return os.path.exists(os.path.join(self.root, self.blob_url_path(digest).lstrip("/")))
