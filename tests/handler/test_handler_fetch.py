"""Reference fetching: public https only, every hop re-checked, size and time capped."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from handler.errors import UserError
from handler.fetch import ReferenceFetcher, is_public_address
from handler.storage import ObjectStore

PAYLOAD = b"RIFF" + b"\x01" * 5000


class Routes(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        routes = {
            "/ref.wav": (200, {}, PAYLOAD),
            "/hop": (302, {"Location": "/ref.wav"}, b""),
            "/to-private": (302, {"Location": "http://10.1.2.3/ref.wav"}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-metadata-name": (302, {"Location": "http://metadata.google.internal/"}, b""),
            "/to-rebind": (302, {"Location": "http://rebind.test/ref.wav"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/missing": (404, {}, b"nope"),
        }
        if self.path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            for _ in range(100):
                self.wfile.write(b"\0" * 10_000)
            return
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\0" * 100)
                self.wfile.flush()
                time.sleep(0.05)
            return
        if self.path == "/cut-short":
            self.send_response(200)
            self.send_header("Content-Length", "10000")
            self.end_headers()
            self.wfile.write(PAYLOAD[:100])
            self.close_connection = True
            return
        if self.path == "/drip-headers":
            # Each byte arrives well inside the socket timeout; only a deadline on the
            # whole exchange stops this.
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(60):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.05)
            return
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients hang up on purpose here
        pass


@pytest.fixture(scope="module")
def origin():
    server = QuietServer(("127.0.0.1", 0), Routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://voices.test:{server.server_address[1]}"
    server.shutdown()


def loopback_is_our_test_server(ip) -> bool:
    """The real policy, except that the test origin on 127.0.0.1 counts as public."""
    return ip == ipaddress.ip_address("127.0.0.1") or is_public_address(ip)


def fake_dns(table):
    def resolve(host, port):
        if host not in table:
            raise OSError("NXDOMAIN")
        return table[host]

    return resolve


@pytest.fixture
def fetcher(make_settings):
    settings = make_settings(allow_http=True, max_ref_bytes=200_000, fetch_timeout_s=1.0)
    dns = fake_dns({"voices.test": ["127.0.0.1"], "rebind.test": ["192.168.1.5"]})
    return ReferenceFetcher(settings, resolve=dns, address_allowed=loopback_is_our_test_server)


def test_fetches_from_an_allowed_host(fetcher, origin):
    assert fetcher.fetch(f"{origin}/ref.wav") == PAYLOAD


def test_follows_a_redirect_to_an_allowed_host(fetcher, origin):
    assert fetcher.fetch(f"{origin}/hop") == PAYLOAD


@pytest.mark.parametrize(
    "route", ["/to-private", "/to-metadata", "/to-metadata-name", "/to-rebind"]
)
def test_redirect_to_a_private_address_is_refused(fetcher, origin, route):
    with pytest.raises(UserError, match="Refusing to fetch"):
        fetcher.fetch(f"{origin}{route}")


def test_redirect_loop_is_cut(fetcher, origin):
    with pytest.raises(UserError, match="redirected more than"):
        fetcher.fetch(f"{origin}/loop")


def test_http_error_is_a_sentence(fetcher, origin):
    with pytest.raises(UserError, match="HTTP 404"):
        fetcher.fetch(f"{origin}/missing")


def test_oversized_body_is_refused_while_streaming(fetcher, origin):
    with pytest.raises(UserError, match="F5TTS_MAX_REF_BYTES"):
        fetcher.fetch(f"{origin}/big")


def test_slow_server_hits_the_time_limit(fetcher, origin):
    with pytest.raises(UserError, match="F5TTS_FETCH_TIMEOUT_S"):
        fetcher.fetch(f"{origin}/slow")


def test_a_body_cut_short_of_its_content_length_is_not_taken_for_the_clip(fetcher, origin):
    with pytest.raises(UserError, match="closed the connection after 100 of 10000 bytes"):
        fetcher.fetch(f"{origin}/cut-short")


def test_server_trickling_its_headers_hits_the_time_limit(fetcher, origin):
    started = time.monotonic()
    with pytest.raises(UserError, match="F5TTS_FETCH_TIMEOUT_S"):
        fetcher.fetch(f"{origin}/drip-headers")
    assert time.monotonic() - started < 2.0  # the limit is 1 s


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.wav",
        "https://[::1]/a.wav",
        "https://10.0.0.8/a.wav",
        "https://172.16.5.4/a.wav",
        "https://192.168.0.1/a.wav",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest",
        "https://[fec0::1]/a.wav",
        "https://[::ffff:127.0.0.1]/a.wav",
        "https://100.64.0.1/a.wav",
        "https://224.0.0.1/a.wav",
        "https://0.0.0.0/a.wav",
        "https://240.0.0.1/a.wav",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://metadata/x",
        "https://localhost/a.wav",
    ],
)
def test_private_loopback_and_metadata_targets_are_refused(make_settings, url):
    fetcher = ReferenceFetcher(make_settings(), resolve=fake_dns({}))
    with pytest.raises(UserError, match="Refusing to fetch"):
        fetcher.fetch(url)


@pytest.mark.parametrize("answer", [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["::1"]])
def test_a_name_resolving_to_a_private_address_is_refused(make_settings, answer):
    fetcher = ReferenceFetcher(make_settings(), resolve=fake_dns({"evil.example": answer}))
    with pytest.raises(UserError, match="Refusing to fetch"):
        fetcher.fetch("https://evil.example/a.wav")


def test_real_resolution_of_localhost_names_is_refused(make_settings):
    fetcher = ReferenceFetcher(make_settings())
    with pytest.raises(UserError, match=r"Refusing|does not resolve"):
        fetcher.fetch("https://127.0.0.1.nip.io.localhost/a.wav")


@pytest.mark.parametrize(
    "url", ["http://example.com/a.wav", "ftp://example.com/a", "file:///etc/passwd"]
)
def test_only_https_unless_allowed(make_settings, url):
    with pytest.raises(UserError, match="must use https"):
        ReferenceFetcher(make_settings()).fetch(url)


def test_data_uri_and_base64_are_capped(make_settings):
    fetcher = ReferenceFetcher(make_settings(max_ref_bytes=1000))
    assert fetcher.fetch("data:audio/wav;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    with pytest.raises(UserError, match="F5TTS_MAX_REF_BYTES"):
        fetcher.decode_base64(base64.b64encode(b"x" * 5000).decode())
    with pytest.raises(UserError, match="not valid base64"):
        fetcher.decode_base64("@@@@")


def test_s3_uri_without_storage_says_what_to_set(make_settings):
    with pytest.raises(UserError, match="S3_BUCKET"):
        ReferenceFetcher(make_settings()).fetch("s3://bucket/voices/a.wav")


def _self_signed(tmp_path, host):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    make_settings, tmp_path, monkeypatch
):
    cert_file, key_file = _self_signed(tmp_path, "voices.test")
    server = QuietServer(("127.0.0.1", 0), Routes)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    port = server.server_address[1]
    try:
        dns = fake_dns({"voices.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        fetcher = ReferenceFetcher(
            make_settings(), resolve=dns, address_allowed=loopback_is_our_test_server
        )
        assert fetcher.fetch(f"https://voices.test:{port}/ref.wav") == PAYLOAD
        with pytest.raises(UserError, match="TLS"):
            fetcher.fetch(f"https://other.test:{port}/ref.wav")
    finally:
        server.shutdown()


def test_s3_reference_reads_the_worker_bucket_but_no_other(s3_settings, s3_endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=s3_settings.s3_bucket, Key="voices/a.wav", Body=b"RIFFa")
    client.create_bucket(Bucket="someone-elses")
    client.put_object(Bucket="someone-elses", Key="secret.wav", Body=b"RIFFs")
    fetcher = ReferenceFetcher(s3_settings, ObjectStore(s3_settings))

    assert fetcher.fetch(f"s3://{s3_settings.s3_bucket}/voices/a.wav") == b"RIFFa"
    with pytest.raises(UserError, match="F5TTS_S3_REF_BUCKETS"):
        fetcher.fetch("s3://someone-elses/secret.wav")

    allowed = s3_settings.model_copy(update={"s3_ref_buckets": "someone-elses, other"})
    assert ReferenceFetcher(allowed, ObjectStore(allowed)).fetch("s3://someone-elses/secret.wav")
