# SPDX-License-Identifier: Apache-2.0
"""TLS and network stand-ins for the upstream-client tests, all on 127.0.0.1:

- TestCA: a throw-away CA (python3-cryptography) that issues server certificates for
  127.0.0.1 / localhost, written as PEM files;
- ConnectProxy: an HTTP proxy that only tunnels (CONNECT host:port), logging each target;
  anything else is logged and answered 405;
- Blackhole: accepts TCP connections and never answers, or answers partly and then stalls
  (nor closes them until stopped).
"""

import datetime
import ipaddress
import os
import socket
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path



def read_head(sock, limit=65536):
    """Reads a request up to the end of its headers; None when the peer closes first or the
    headers pass limit bytes."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) + len(chunk) > limit:
            return None
        head += chunk
    return head

class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory, name="regcache-test-ca"):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = _write(os.path.join(directory, "ca.pem"),
                                self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, dns=("localhost",), ips=("127.0.0.1",)):
        """A server certificate and key for the names; returns (cert_path, key_path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns
                                                        else ips[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = _write(os.path.join(self.directory, stem + ".pem"),
                           cert.public_bytes(serialization.Encoding.PEM))
        key_path = _write(os.path.join(self.directory, stem + "-key.pem"),
                          key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        return cert_path, key_path

    def server_context(self, stem="server"):
        cert, key = self.issue(stem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    def client_context(self):
        return ssl.create_default_context(cafile=self.cert_path)


class _Acceptor:
    """A listening socket on 127.0.0.1 with an accept thread calling self._serve(conn)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _keep(self, *socks):
        with self._lock:
            self._conns.extend(socks)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._keep(conn)
            self._on_accept(conn)

    def stop(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


class Blackhole(_Acceptor):
    """Accepts connections and never completes an answer: with reply=None it reads nothing and
    sends nothing; with reply=b"..." it reads each request's head, sends those bytes (e.g. a
    status line, headers and part of a body) and then stalls. `accepted` counts connections."""

    def __init__(self, reply=None):
        self.accepted = 0
        self.reply = reply
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _on_accept(self, conn):
        self.accepted += 1
        if self.reply is not None:
            threading.Thread(target=self._answer_partly, args=(conn,), daemon=True).start()

    def _answer_partly(self, conn):
        try:
            conn.settimeout(30)
            if read_head(conn) is None:
                return
            conn.sendall(self.reply)
        except OSError:
            pass


class ConnectProxy(_Acceptor):
    """A tunnelling HTTP proxy. `log` holds (method, target) of every request line it got.
    `names` maps host names to the addresses to connect to: a name the client cannot resolve
    itself still reaches a loopback server, as if it were on another host."""

    def __init__(self, names=None):
        self.log = []
        self.names = dict(names or {})
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _on_accept(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client):
        upstream = None
        try:
            client.settimeout(30)
            head = read_head(client)
            if head is None:
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            method, target = (parts + ["", ""])[:2]
            with self._lock:
                self.log.append((method, target))
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            host = self.names.get(host, host)
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except (OSError, ValueError):
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            self._keep(upstream)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            client.settimeout(None)
            upstream.settimeout(None)
            t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            t.start()
            _pipe(client, upstream)
            t.join(30)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    def connects(self):
        with self._lock:
            return [t for m, t in self.log if m == "CONNECT"]


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
