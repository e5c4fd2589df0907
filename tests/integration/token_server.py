# SPDX-License-Identifier: Apache-2.0
"""A small token issuer that behaves like auth.docker.io, for docker-registry's `auth.token`.

GET /token?service=S&scope=repository:NAME:pull[,push][&scope=...] [Authorization: Basic ...]
answers {"token", "access_token", "expires_in", "issued_at"} with an RS256 JWT whose `x5c`
header carries a self-signed certificate; that certificate is what the registry's
`rootcertbundle` trusts. Anonymous callers get `pull` only; the configured user gets what they
ask for among pull/push. Wrong credentials get 401. Every request is appended to a JSON-lines
log file (path, query, whether Authorization was sent, the user) for the tests to read.

Run standalone: python3 token_server.py --port 0 --dir DIR (prints the port on stdout).
"""

import argparse
import base64
import datetime
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def make_signing_material(directory):
    """Creates an RSA key and a self-signed certificate in directory; returns (key, cert, cert_path)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regcache-test-token-issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "token-ca.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, cert_path


class TokenServer:
    """The issuer, served from a background thread. `url` is the realm to configure."""

    def __init__(self, directory, issuer="regcache-test-issuer", users=None, expires_in=300,
                 host="127.0.0.1", port=0):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.issuer = issuer
        self.users = dict(users or {"pushuser": "pushpass"})
        self.expires_in = expires_in
        self.key, self.cert, self.cert_path = make_signing_material(directory)
        self._x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.log_path = os.path.join(directory, "token-requests.jsonl")
        self._log_lock = threading.Lock()
        open(self.log_path, "w").close()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/token"
        self._thread = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    # -- what the tests read -------------------------------------------------------------------
    def requests(self):
        """Every request so far, as dicts: path, query (dict of lists), auth (bool), user, status."""
        with self._log_lock, open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    # -- token making ------------------------------------------------------------------------
    def grant(self, scopes, user):
        """The access list for the requested scopes: push only for a known user."""
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            allowed = {"pull"} | ({"push", "delete", "*"} if user else set())
            granted = [a for a in actions if a in allowed]
            if granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        return access

    def make_token(self, service, scopes, user):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": self.grant(scopes, user),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": self._x5c})

    def _log(self, entry):
        with self._log_lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet: our own log is the record
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="regcache-test"')
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                auth = self.headers.get("Authorization")
                user, status = None, 200
                if auth:
                    user, status = self._check_basic(auth)
                server._log({"path": url.path, "query": query, "auth": bool(auth),
                             "user": user, "status": status if url.path == "/token" else 404,
                             "time": time.time()})
                if url.path != "/token":
                    return self._reply(404, {"error": "not found"})
                if status != 200:
                    return self._reply(401, {"details": "incorrect username or password"})
                token = server.make_token(query.get("service", [""])[0],
                                          query.get("scope", []), user)
                self._reply(200, {"token": token, "access_token": token,
                                  "expires_in": server.expires_in,
                                  "issued_at": datetime.datetime.now(datetime.timezone.utc)
                                  .strftime("%Y-%m-%dT%H:%M:%SZ")})

            def _check_basic(self, header):
                scheme, _, value = header.partition(" ")
                if scheme.lower() != "basic":
                    return None, 401
                try:
                    user, _, password = base64.b64decode(value).decode().partition(":")
                except Exception:
                    return None, 401
                if server.users.get(user) != password:
                    return None, 401
                return user, 200

            do_HEAD = do_GET

        return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--expires-in", type=int, default=300)
    args = p.parse_args()
    ts = TokenServer(args.dir, port=args.port, expires_in=args.expires_in)
    print(ts.port, flush=True)
    ts._httpd.serve_forever()


if __name__ == "__main__":
    main()
