# SPDX-License-Identifier: Apache-2.0
"""docker-registry set up in ways upstream.Upstream does not cover, built on it (same storage
layout, access log and parser): TLS, the storage `redirect` middleware, htpasswd (Basic) auth.
Also a token issuer served over TLS, and a way to start a mirror.Mirror with its own environment
(mirror.py inherits the test's environment)."""

import http.client
import os
import ssl
import subprocess
from http.server import ThreadingHTTPServer

import yaml

import procs
from mirror import REGCACHE
from token_server import TokenServer
from upstream import Upstream

PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class ConfiguredUpstream(Upstream):
    """An Upstream whose config can be edited before start(); tls=(cert, key, ca) serves HTTPS
    (url becomes https://127.0.0.1:PORT)."""

    def __init__(self, directory, token_server, service="upstream", tls=None):
        super().__init__(directory, token_server, service)
        self.tls = tls
        if tls:
            cert, key, _ = tls
            self.url = f"https://127.0.0.1:{self.port}"
            self.edit(lambda c: c["http"].update(tls={"certificate": cert, "key": key}))

    def edit(self, fn):
        with open(self.config_path) as f:
            cfg = yaml.safe_load(f)
        fn(cfg)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        return self

    def use_redirect(self, base_url):
        """Blob GETs answer 307 to base_url's scheme://host + the storage driver path."""
        return self.edit(lambda c: c.update(middleware={"storage": [
            {"name": "redirect", "options": {"baseurl": base_url}}]}))

    def use_htpasswd(self, users, realm="regcache-basic"):
        """Basic auth against an htpasswd file (bcrypt, made with `htpasswd -B`) instead of tokens.
        users: {name: password}."""
        path = os.path.join(self.directory, "htpasswd")
        for i, (user, password) in enumerate(users.items()):
            subprocess.run(["htpasswd", "-B", "-b", *(["-c"] if i == 0 else []), path, user,
                            password], check=True, capture_output=True)
        self.realm = realm
        return self.edit(lambda c: c.update(auth={"htpasswd": {"realm": realm, "path": path}}))

    def start(self):
        if not self.tls:
            return super().start()
        if self.proc and self.proc.alive():
            return self
        self.proc = procs.Proc(["docker-registry", "serve", self.config_path], self.log_path)
        procs.wait_for(lambda: https_status(self.port, self.tls[2]) == 401, 20,
                       f"docker-registry (TLS) on :{self.port}", proc=self.proc)
        return self

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def https_status(port, ca_file, path="/v2/", host="127.0.0.1", timeout=2.0):
    ctx = ssl.create_default_context(cafile=ca_file)
    return procs.http_status(port, path, timeout=timeout, conn=http.client.HTTPSConnection(
        host, port, timeout=timeout, context=ctx))


class _TlsHTTPServer(ThreadingHTTPServer):
    """HTTPS with the handshake in the request thread (a silent client cannot stall accept)."""
    daemon_threads = True

    def __init__(self, addr, handler, ctx):
        self.ctx = ctx
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            request.do_handshake()
        except OSError:
            return
        request.settimeout(None)
        super().finish_request(request, client_address)


class TlsTokenServer(TokenServer):
    """token_server.TokenServer served over HTTPS with ssl_ctx; url is https://127.0.0.1:P/token."""

    def __init__(self, directory, ssl_ctx, **kw):
        super().__init__(directory, **kw)
        handler = self._httpd.RequestHandlerClass
        self._httpd.server_close()
        self._httpd = _TlsHTTPServer(("127.0.0.1", 0), handler, ssl_ctx)
        self.port = self._httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/token"


def start_mirror_with_env(m, env_overrides):
    """Starts an unstarted mirror.Mirror like Mirror.start(), but with the test's environment minus
    every proxy variable, plus env_overrides. Stop it with m.stop() as usual."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(env_overrides)
    m.proc = procs.Proc([*REGCACHE, "serve", "-c", m.config_path], m.log_path, env=env)
    procs.wait_for(lambda: procs.http_status(m.port, "/healthz") == 200, 20,
                   f"regcache /healthz on :{m.port}", proc=m.proc)
    return m
