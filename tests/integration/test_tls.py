"""HTTPS: the TLS listener with a certificate the test generates, viewer_protocol, renewed certificates,
verified https origins with a per-origin opt-out."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config
from tests.conftest import Origin
from tests.server_process import free_port


def make_cert(directory: Path, name: str, common_name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost, made with the openssl command."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def start_edge(tmp_path: Path, text: str) -> Edge:
    edge = Edge(
        parse_config(text, str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path), shutdown_grace=1.0
    )
    await edge.start((ListenAddress(host="127.0.0.1", port=0),))
    return edge


async def test_https_listener_and_viewer_protocol(tmp_path: Path, origin: Origin) -> None:
    cert, key = make_cert(tmp_path, "edge")
    origin.static("/page", "secret page")
    origin.static("/open", "open page")
    origin_url = await origin.start()
    tls_port = free_port()
    edge = await start_edge(
        tmp_path,
        f"""
server:
  name: edge-tls
  access_log: "off"
  tls: {{listen: "127.0.0.1:{tls_port}", cert: {cert.name}, key: {key.name}}}
origins: {{app: {{url: "{origin_url}"}}}}
behaviours:
  - path: /page
    origin: app
    viewer_protocol: redirect-to-https
  - path: "*"
    origin: app
""",
    )
    try:
        http_port = edge.addresses[0][1]
        connector = aiohttp.TCPConnector(ssl=client_context(cert))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(f"https://127.0.0.1:{tls_port}/page") as response:
                assert response.status == 200 and await response.text() == "secret page"
            assert origin.seen[-1].headers["X-Forwarded-Proto"] == "https"
            async with session.get(f"http://127.0.0.1:{http_port}/page", allow_redirects=False) as response:
                # To the TLS listener's port, not the plain-HTTP port the viewer used.
                assert response.status == 301
                assert response.headers["Location"] == f"https://127.0.0.1:{tls_port}/page"
            async with session.get(response.headers["Location"]) as followed:
                assert followed.status == 200 and await followed.text() == "secret page"
            async with session.get(f"http://127.0.0.1:{http_port}/open") as response:
                assert response.status == 200
    finally:
        await edge.stop()


async def test_renewed_certificate_is_picked_up(tmp_path: Path, origin: Origin) -> None:
    cert, key = make_cert(tmp_path, "edge", common_name="first")
    origin.static("/x", "x")
    origin_url = await origin.start()
    tls_port = free_port()
    edge = await start_edge(
        tmp_path,
        f"""
server:
  name: e
  access_log: "off"
  tls: {{listen: "127.0.0.1:{tls_port}", cert: {cert.name}, key: {key.name}}}
origins: {{app: {{url: "{origin_url}"}}}}
behaviours: [{{path: "*", origin: app}}]
""",
    )
    try:
        renewed_cert, renewed_key = make_cert(tmp_path, "renewed", common_name="second")
        cert.write_bytes(renewed_cert.read_bytes())
        key.write_bytes(renewed_key.read_bytes())
        assert edge.tls is not None and edge.tls.reload_if_changed()
        connector = aiohttp.TCPConnector(ssl=client_context(renewed_cert))
        url = f"https://127.0.0.1:{tls_port}/x"
        async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
            assert response.status == 200  # only the renewed certificate is trusted by this client
    finally:
        await edge.stop()


@pytest.mark.parametrize("verify", [True, False])
async def test_https_origin_verified_unless_opted_out(tmp_path: Path, verify: bool) -> None:
    cert, key = make_cert(tmp_path, "origin")
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="tls origin")

    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    edge = await start_edge(
        tmp_path,
        f"""
server: {{name: e, access_log: "off"}}
origins: {{app: {{url: "https://127.0.0.1:{port}", tls_verify: {str(verify).lower()}}}}}
behaviours: [{{path: "*", origin: app}}]
""",
    )
    try:
        host, edge_port = edge.addresses[0]
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{edge_port}/") as response:
            if verify:
                assert response.status == 502  # a self-signed origin is refused by default
            else:
                assert response.status == 200 and await response.text() == "tls origin"
    finally:
        await edge.stop()
        await runner.cleanup()
