"""TLS from the web config: https scrapes, client certificates, versions, rotation.

Every certificate is made here, in tmp_path, by a throwaway CA (EC keys: fast to generate).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from exporter.web import WebConfigError, WebServer, load_web_config, make_app
from exporter.web.auth import BasicAuth
from tests.test_web import hooks
from tests.test_web_auth import basic, hashed


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Authority:
    """A CA that writes PEM files: itself, servers for loopback, clients."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(self.subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / f"{name}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    def issue(self, name: str, *, client: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = self._builder(subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if not client:
            sans: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued

    def client_context(self, *, cert: Issued | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.pem)
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
        return context


def fetch(url: str, context: ssl.SSLContext, authorization: str | None = None) -> tuple[int, str]:
    """GET over https: (status, body) for any HTTP answer; transport failures raise."""
    headers = {} if authorization is None else {"Authorization": authorization}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def refused(url: str, context: ssl.SSLContext) -> None:
    """The connection fails below HTTP (handshake or reset): no status code at all."""
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        fetch(url, context)


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "ca")


@pytest.fixture
def server_cert(ca: Authority) -> Issued:
    return ca.issue("server")


def start(tmp_path: Path, text: str, host: str = "127.0.0.1") -> WebServer:
    path = tmp_path / "web.yml"
    path.write_text(text)
    web = WebServer(host, 0, make_app(CollectorRegistry(), hooks()), web_config_file=path)
    web.start()
    return web


def tls_yaml(cert: Issued, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {cert.cert}\n  key_file: {cert.key}\n{extra}"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_https_scrape_verified_against_the_ca(
    tmp_path: Path, ca: Authority, server_cert: Issued, host: str
) -> None:
    web = start(tmp_path, tls_yaml(server_cert), host)
    try:
        assert web.tls
        assert web.url.startswith("https://")
        assert fetch(web.url + "/-/healthy", ca.client_context()) == (200, "Healthy\n")
        refused(web.url + "/-/healthy", Authority(tmp_path, "other").client_context())
    finally:
        web.close()


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, ca: Authority, server_cert: Issued, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = f"tls_server_config:\n  cert_file: {server_cert.cert.name}\n  key_file: {server_cert.key.name}\n"
    web = start(tmp_path, text)
    try:
        assert fetch(web.url + "/-/healthy", ca.client_context())[0] == 200
    finally:
        web.close()


def test_min_version_is_honoured(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    web = start(tmp_path, tls_yaml(server_cert, "  min_version: TLS13\n"))
    try:
        old = ca.client_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        refused(web.url + "/-/healthy", old)
        assert fetch(web.url + "/-/healthy", ca.client_context())[0] == 200
    finally:
        web.close()


def test_max_version_is_honoured(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    web = start(tmp_path, tls_yaml(server_cert, "  max_version: TLS12\n"))
    try:
        new_only = ca.client_context()
        new_only.minimum_version = ssl.TLSVersion.TLSv1_3
        refused(web.url + "/-/healthy", new_only)
        assert fetch(web.url + "/-/healthy", ca.client_context())[0] == 200
    finally:
        web.close()


def test_client_cert_required(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    """RequireAndVerifyClientCert: no cert, or one from another CA, gets no HTTP at all."""
    clients = Authority(tmp_path, "clients")
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {clients.pem}\n"
    web = start(tmp_path, tls_yaml(server_cert, extra))
    try:
        refused(web.url + "/metrics", ca.client_context())
        stranger = Authority(tmp_path, "stranger").issue("mallory", client=True)
        refused(web.url + "/metrics", ca.client_context(cert=stranger))
        good = clients.issue("prometheus", client=True)
        assert fetch(web.url + "/metrics", ca.client_context(cert=good))[0] == 200
    finally:
        web.close()


def test_client_cert_verified_if_given(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    extra = f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {ca.pem}\n"
    web = start(tmp_path, tls_yaml(server_cert, extra))
    try:
        assert fetch(web.url + "/metrics", ca.client_context())[0] == 200
        stranger = Authority(tmp_path, "stranger").issue("mallory", client=True)
        refused(web.url + "/metrics", ca.client_context(cert=stranger))
        good = ca.issue("prometheus", client=True)
        assert fetch(web.url + "/metrics", ca.client_context(cert=good))[0] == 200
    finally:
        web.close()


def test_tls_with_basic_auth(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    extra = f"basic_auth_users:\n  prometheus: '{hashed('pw')}'\n"
    web = start(tmp_path, tls_yaml(server_cert) + extra)
    try:
        assert web.basic_auth
        assert fetch(web.url + "/metrics", ca.client_context())[0] == 401
        assert fetch(web.url + "/metrics", ca.client_context(), basic("prometheus", "pw"))[0] == 200
    finally:
        web.close()


def test_certificate_rotation_needs_no_restart(
    tmp_path: Path, ca: Authority, server_cert: Issued
) -> None:
    """New certificate files apply to the next connection; turning TLS off is refused (500)."""
    web = start(tmp_path, tls_yaml(server_cert))
    try:
        assert fetch(web.url + "/-/healthy", ca.client_context())[0] == 200
        ca2 = Authority(tmp_path, "ca2")
        fresh = ca2.issue("server2")
        os.replace(fresh.cert, server_cert.cert)
        os.replace(fresh.key, server_cert.key)
        assert fetch(web.url + "/-/healthy", ca2.client_context())[0] == 200
        refused(web.url + "/-/healthy", ca.client_context())

        (tmp_path / "web.yml").write_text("")  # TLS off: needs a restart
        status, body = fetch(web.url + "/-/healthy", ca2.client_context())
        assert status == 500
        assert "invalid" in body
    finally:
        web.close()


def test_silent_tls_client_does_not_block_others(
    tmp_path: Path, ca: Authority, server_cert: Issued
) -> None:
    """Handshakes run per connection, not in accept(): a client that connects and says
    nothing (no ClientHello) leaves scrapes unaffected."""
    web = start(tmp_path, tls_yaml(server_cert))
    silent = socket.create_connection((web.host, web.port), timeout=10)
    try:
        assert fetch(web.url + "/-/healthy", ca.client_context())[0] == 200
    finally:
        silent.close()
        web.close()


@pytest.mark.parametrize(
    ("extra", "key", "text"),
    [
        ("  client_auth_type: RequireAnyClientCert\n", "client_auth_type", "not supported"),
        ("  client_auth_type: Sometimes\n", "client_auth_type", "unknown value 'Sometimes'"),
        ("  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file", "required with"),
        ("  client_ca_file: {ca}\n", "client_ca_file", "does not ask for client certificates"),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "min_version",
            "TLS13 is above max_version TLS12",
        ),
        ("  min_version: SSL3\n", "min_version", "unknown TLS version 'SSL3'"),
    ],
)
def test_tls_problems_name_the_key(
    tmp_path: Path, ca: Authority, extra: str, key: str, text: str
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(tls_yaml(ca.issue("server"), extra.format(ca=ca.pem)))
    with pytest.raises(WebConfigError) as info:
        WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks()), web_config_file=path)
    assert str(info.value).startswith(f"web config {path}: tls_server_config.{key}: ")
    assert text in str(info.value)


def test_mismatched_key_is_a_config_error(
    tmp_path: Path, ca: Authority, server_cert: Issued
) -> None:
    other = ca.issue("other")
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {server_cert.cert}\n  key_file: {other.key}\n"
    )
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: cannot load"):
        WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks()), web_config_file=path)


def test_security_doc_example_is_a_valid_web_config(tmp_path: Path) -> None:
    """The example in docs/security.md loads, once its certificate files exist."""
    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tls").mkdir()
    ca = Authority(tmp_path / "tls", "clients-ca")
    served = ca.issue("server")
    os.replace(served.cert, tmp_path / "tls" / "server.crt")
    os.replace(served.key, tmp_path / "tls" / "server.key")
    os.replace(ca.pem, tmp_path / "tls" / "clients-ca.crt")
    path = tmp_path / "web.yml"
    path.write_text(example)
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert BasicAuth().check(config.users, basic("prometheus", "change-me"))
    assert dict(config.headers)["X-Content-Type-Options"] == "nosniff"
