"""The front door end to end: the official Python SDK client connects over HTTPS (a test CA made
here with `cryptography`) with a bearer JWT signed by a key whose JWKS a local endpoint serves,
through mcpgate to a real MCP server; without a token, with a forged one, or without trusting
the CA, it gets nowhere."""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
import time

import anyio
import httpx2
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness import VENV_BIN, start_gateway, stop

ISSUER = "https://idp.e2e.test/"
RESOURCE = "https://mcp.e2e.test/mcp"


def make_pki(tmp_path):
    """A CA and a server certificate for localhost/127.0.0.1, written as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcpgate e2e CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcpgate")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


class Jwks:
    """An RSA signing key and a JWKS endpoint on 127.0.0.1 serving its public half."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [dict(public, kid="e2e-1", alg="RS256", use="sig")]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def token(self, sub: str, **extra) -> str:
        claims = {"iss": ISSUER, "aud": RESOURCE, "sub": sub, "exp": int(time.time()) + 600,
                  "scope": "mcp", **extra}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "e2e-1"})

    def close(self):
        self.server.shutdown()


@pytest.fixture
def front_door(tmp_path):
    pki = make_pki(tmp_path)
    jwks = Jwks()
    gw = start_gateway(f"""
listen:
  addr: 127.0.0.1:0
  public_url: {RESOURCE}
  tls: {{ cert_file: "{pki['cert']}", key_file: "{pki['key']}" }}
upstreams:
  - id: time
    stdio: {{ command: "{VENV_BIN / 'mcp-server-time'}", args: ["--local-timezone", "UTC"] }}
auth:
  jwt: {{ issuer: "{ISSUER}", jwks_url: "{jwks.url}", algorithms: [RS256] }}
  required_scopes: [mcp]
  authorization_servers: ["{ISSUER}"]
""", tmp_path)
    assert gw.url.startswith("https://")
    yield gw, pki, jwks
    stop(gw.proc)
    jwks.close()


def client(url: str, ca, token: str | None, seen: list | None = None) -> Client:
    """The SDK client over HTTPS trusting `ca`, sending `token`; HTTP answers recorded in `seen`
    as (status, WWW-Authenticate)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def record(response):
        if seen is not None:
            seen.append((response.status_code, response.headers.get("www-authenticate")))

    http = httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), headers=headers,
                              timeout=30, event_hooks={"response": [record]})
    return Client(streamable_http_client(url, http_client=http))


def test_python_sdk_over_https_with_a_signed_token(front_door):
    gw, pki, jwks = front_door

    async def run():
        async with client(gw.url, pki["ca"], jwks.token("alice")) as c:
            tools = await c.list_tools()
            assert "get_current_time" in [t.name for t in tools.tools]
            now = await c.call_tool("get_current_time", {"timezone": "Europe/Lisbon"})
            assert not now.is_error
            assert now.structured_content["timezone"] == "Europe/Lisbon"

    anyio.run(run)


@pytest.mark.parametrize("case", ["no token", "forged token", "untrusted CA"])
def test_python_sdk_is_refused_without_valid_credentials(front_door, case):
    gw, pki, jwks = front_door
    token = {"no token": None, "untrusted CA": jwks.token("alice"),
             "forged token": jwt.encode({"iss": ISSUER, "aud": RESOURCE, "sub": "mallory",
                                         "exp": int(time.time()) + 600, "scope": "mcp"},
                                        rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                        algorithm="RS256", headers={"kid": "e2e-1"})}[case]
    ca = pki["cert"] if case == "untrusted CA" else pki["ca"]  # a leaf is not a trust anchor

    seen = []

    async def run():
        async with client(gw.url, ca, token, seen) as c:
            await c.list_tools()

    with pytest.raises(BaseException) as raised:
        anyio.run(run)
    if case == "untrusted CA":
        text = repr(raised.value) + "".join(repr(e) for e in getattr(raised.value, "exceptions", []))
        assert "CERTIFICATE_VERIFY_FAILED" in text, text
        assert seen == [], "no HTTP exchange without a verified server certificate"
    else:
        assert seen and all(status == 401 for status, _ in seen), seen
        challenge = seen[0][1]
        assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge, challenge
        assert ('error="invalid_token"' in challenge) == (case == "forged token"), challenge
