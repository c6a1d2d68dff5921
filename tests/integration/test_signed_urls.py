"""Signed URLs and cookies through a real edge: good, tampered, expired, rotated keys, network-bound,
cookies, an unset key, and ``edgeproxy sign`` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from proxy.edge.signing import COOKIE_NAME, sign_cookie, sign_url
from tests.conftest import EdgeFactory, Origin, RunningEdge

REPO = Path(__file__).resolve().parents[2]
NEW_KEY = "new-signing-key-0123456789"
OLD_KEY = "old-signing-key-0123456789"

SIGNED = f"""
origins: {{app: {{url: "{{origin}}"}}}}
behaviours:
  - path: /private/*
    origin: app
    signed: {{key: ["{NEW_KEY}", "{OLD_KEY}"], cookies: true}}
  - {{path: "*", origin: app}}
"""


def in_an_hour() -> int:
    return int(time.time()) + 3600


def target(url: str) -> str:
    """``/path?query`` of a signed URL, to send to the test edge."""
    split = urlsplit(url)
    return f"{split.path}?{split.query}" if split.query else split.path


async def get(edge: RunningEdge, path: str, **kwargs: object) -> tuple[int, str, str]:
    response, body = await edge.get(path, **kwargs)  # type: ignore[arg-type]
    return response.status, response.headers.get("Cache-Status", ""), body.decode()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_good_url_is_served_and_its_signature_is_not_part_of_the_key(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    origin.static("/private/video.mp4", "movie", Cache_Control="max-age=3600")
    edge = await make_edge(SIGNED, origin)
    first = target(sign_url("/private/video.mp4?quality=hd", NEW_KEY, in_an_hour()))
    status, cache_status, body = await get(edge, first)
    assert (status, body) == (200, "movie")
    assert origin.seen[-1].path_qs == "/private/video.mp4?quality=hd"
    # Another signature for the same object: a hit on the same entry.
    second = target(sign_url("/private/video.mp4?quality=hd", NEW_KEY, in_an_hour() + 60))
    status, cache_status, _ = await get(edge, second)
    assert status == 200 and "hit" in cache_status
    assert origin.count("/private/video.mp4") == 1


async def test_missing_tampered_and_expired_urls_get_403(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/video.mp4", "movie", Cache_Control="max-age=3600")
    origin.static("/private/other.mp4", "other", Cache_Control="max-age=3600")
    edge = await make_edge(SIGNED, origin)
    good = target(sign_url("/private/video.mp4", NEW_KEY, in_an_hour()))
    cases = {
        "/private/video.mp4": "signature-missing",
        good.replace("video", "other"): "signature-invalid",
        good.replace("Expires=", "Expires=9"): "signature-invalid",
        good + "&extra=1": "signature-invalid",
        target(sign_url("/private/video.mp4", "not-our-key-0123456789", in_an_hour())): "signature-invalid",
        target(sign_url("/private/video.mp4", NEW_KEY, int(time.time()) - 1)): "signature-expired",
    }
    for path, reason in cases.items():
        response, body = await edge.get(path)
        assert response.status == 403, path
        assert f"detail={reason}" in response.headers["Cache-Status"], path
        assert response.headers["X-Request-Id"] in body.decode()
    assert origin.count() == 0
    # Cached objects are guarded on hits too.
    assert (await get(edge, good))[0] == 200
    assert (await get(edge, "/private/video.mp4"))[0] == 403


async def test_rotated_keys_both_verify(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/a", "a", Cache_Control="no-store")
    edge = await make_edge(SIGNED, origin)
    for key in (NEW_KEY, OLD_KEY):
        assert (await get(edge, target(sign_url("/private/a", key, in_an_hour()))))[0] == 200
    retired = SIGNED.replace(f', "{OLD_KEY}"', "")
    edge = await make_edge(retired, origin)
    assert (await get(edge, target(sign_url("/private/a", OLD_KEY, in_an_hour()))))[0] == 403
    assert (await get(edge, target(sign_url("/private/a", NEW_KEY, in_an_hour()))))[0] == 200


async def test_network_bound_url(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/a", "a", Cache_Control="no-store")
    edge = await make_edge(SIGNED, origin)
    path = target(sign_url("/private/a", NEW_KEY, in_an_hour(), network="127.0.0.2/32"))
    for address, expected in (("127.0.0.2", 200), ("127.0.0.3", 403)):
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(edge.url + path) as response,
        ):
            assert response.status == expected, address


async def test_signed_cookie_grants_its_prefix(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/show/1.ts", "segment", Cache_Control="no-store")
    origin.static("/private/admin", "admin", Cache_Control="no-store")
    edge = await make_edge(SIGNED, origin)
    cookie = {"Cookie": f"lang=de; {COOKIE_NAME}={sign_cookie(OLD_KEY, '/private/show/', in_an_hour())}"}
    assert (await get(edge, "/private/show/1.ts", headers=cookie))[0] == 200
    assert (await get(edge, "/private/admin", headers=cookie))[0] == 403
    assert (await get(edge, "/private/show/%2e%2e/admin", headers=cookie))[0] == 403
    expired = {"Cookie": f"{COOKIE_NAME}={sign_cookie(NEW_KEY, '/private/', int(time.time()) - 1)}"}
    status, cache_status, _ = await get(edge, "/private/show/1.ts", headers=expired)
    assert status == 403 and "detail=signature-expired" in cache_status


async def test_encoded_path_cannot_leave_the_signed_behaviour(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/a", "secret", Cache_Control="no-store")
    edge = await make_edge(SIGNED, origin)
    for path in ("/%70rivate/a", "/public/../private/a", "//private/a", "/public/%2e%2e/private/a"):
        # encoded=True: the client must send the path exactly as written (no normalising on its side).
        async with edge.session.get(URL(edge.url + path, encoded=True)) as response:
            assert response.status == 400, path
            assert "detail=ambiguous-path" in response.headers["Cache-Status"]
            assert "secret" not in await response.text()
    assert origin.count() == 0


async def test_unset_signing_key_refuses_everything(make_edge: EdgeFactory, origin: Origin) -> None:
    origin.static("/private/a", "secret", Cache_Control="no-store")
    text = SIGNED.replace(f'["{NEW_KEY}", "{OLD_KEY}"]', '"${URL_SIGNING_KEY}"')
    edge = await make_edge(text, origin)  # loaded with an empty environment: the key is ""
    for path in ("/private/a", target(sign_url("/private/a", "anything", in_an_hour()))):
        status, cache_status, _ = await get(edge, path)
        assert status == 403 and "detail=signing-key-missing" in cache_status
    assert origin.count() == 0


async def test_sign_command_output_is_accepted(
    make_edge: EdgeFactory, origin: Origin, tmp_path: Path
) -> None:
    origin.static("/private/a", "a", Cache_Control="no-store")
    edge = await make_edge(SIGNED, origin)
    result = run_cli("sign", "https://cdn.example/private/a?x=1", "--expires", "1h", "--key", OLD_KEY)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("https://cdn.example/private/a?x=1&Expires=")
    assert (await get(edge, target(url)))[0] == 200
    # Without --key, the key comes from the behaviour in the config (environment interpolated).
    config = tmp_path / "edge.yaml"
    config.write_text(SIGNED.replace("{origin}", origin.url).replace(f'["{NEW_KEY}", "{OLD_KEY}"]', "${K}"))
    result = run_cli("sign", "/private/a", "--expires", "10m", "--config", str(config), env={"K": NEW_KEY})
    assert result.returncode == 0, result.stderr
    assert (await get(edge, target(result.stdout.strip())))[0] == 200
    cookie = run_cli("sign", "/private/", "--cookie", "/private/", "--expires", "1h", "--key", NEW_KEY)
    assert cookie.returncode == 0, cookie.stderr
    headers = {"Cookie": f"{COOKIE_NAME}={cookie.stdout.strip()}"}
    assert (await get(edge, "/private/a", headers=headers))[0] == 200


def test_sign_command_refuses_what_it_cannot_sign(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        SIGNED.replace("{origin}", "http://127.0.0.1:9").replace(f'["{NEW_KEY}", "{OLD_KEY}"]', "${K}")
    )
    cases = [
        ("sign", "/private/a", "--expires", "1h", "--config", str(config)),  # the key is unset
        ("sign", "/public/a", "--expires", "1h", "--config", str(config)),  # not a signed behaviour
        ("sign", "/private/a", "--expires", "soon", "--key", NEW_KEY),
        ("sign", "/private/a", "--expires", "1h", "--key", NEW_KEY, "--network", "nope"),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr and result.stdout == ""
