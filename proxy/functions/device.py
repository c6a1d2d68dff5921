"""Viewer device class from the User-Agent: ``mobile``, ``tablet``, ``desktop``, ``smarttv`` or ``bot``.

``classify_device`` is pure and table-driven (one compiled pattern per class, tried in a fixed order) and
memoised in a bounded dict, since a site sees the same few hundred User-Agents over and over. It is called
once per request by RECV to set the ``Edge-Viewer-Device`` request header (replacing whatever the viewer
sent), so that behaviours can key their cache on the device class instead of the raw User-Agent, and by
``ViewerRequest.device`` when that header is absent.

Decisions (documented in docs/edge-functions.md):
- **bot**: known crawlers (Googlebot, bingbot, …, anything naming itself ``…bot``, ``crawler`` or
  ``spider``), headless browsers, and HTTP libraries and command-line clients (curl, Wget,
  python-requests, aiohttp, Go's net/http, okhttp, …): software, not a person on a device.
- **smarttv**: smart TVs, TV sticks and boxes (Apple TV, Roku, Fire TV, Chromecast, Tizen or webOS TVs,
  Android TV) and game consoles (PlayStation, Xbox).
- **tablet**: iPad, Kindle and Kindle Fire (Silk), Android without ``Mobile``, anything saying ``Tablet``.
  iPadOS 13+ Safari sends a desktop Mac User-Agent by default: it is ``desktop``, as no header tells it
  apart.
- **mobile**: iPhone, iPod, Android with ``Mobile``, Windows Phone, BlackBerry, KaiOS, Opera Mini, …, and
  Android app clients (``Dalvik``).
- **desktop**: everything else, including a missing or empty User-Agent.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

__all__ = ["DEVICE_CLASSES", "DEVICE_HEADER", "DeviceClass", "classify_device"]

DeviceClass = Literal["mobile", "tablet", "desktop", "smarttv", "bot"]
DEVICE_CLASSES: Final[frozenset[str]] = frozenset(get_args(DeviceClass))
DEVICE_HEADER: Final = "Edge-Viewer-Device"

_CACHE_SIZE: Final = 4096  # distinct User-Agents remembered (oldest forgotten first)
_MAX_UA: Final = 512  # only the start of a longer User-Agent is looked at (bounds the work per request)

# Each pattern runs on the lower-cased User-Agent; the first class whose pattern matches wins.
_BOT = re.compile(
    r"(?<!cu)bot\b|crawl|spider|slurp|facebookexternalhit|mediapartners-google|ia_archiver"
    r"|google-inspectiontool|lighthouse|headlesschrome|phantomjs|"
    # HTTP libraries and command-line clients (at the start of the User-Agent, where they put their name)
    r"^(?:curl|wget|httpie|python|aiohttp|go-http-client|java"
    r"|okhttp|libwww-perl|lwp::|axios|node-fetch|undici|got|apache-httpclient|guzzlehttp|ruby"
    r"|faraday|postmanruntime|insomnia|powershell|rest-client|http\.rb|dart|reqwest|hackney|scrapy)\b"
    r"|windowspowershell|\baiohttp/"
)
_SMARTTV = re.compile(
    r"smart-?tv|smart tv|\btv\b.*(?:tizen|web0s|webos)|(?:tizen|web0s|webos|netcast).*\btv\b|hbbtv"
    r"|appletv|apple tv|\btvos\b|roku|\baft[a-z0-9]{1,10}(?: build/|\))|crkey|googletv|google tv|android tv"
    r"|bravia|philipstv|vidaa|\bomi/|playstation [345]|xbox|large screen"
)
_TABLET = re.compile(r"ipad|tablet(?! pc)|kindle|\bsilk\b|\bkf[a-z]{2,6}\b|playbook|\bsm-t\d")
_MOBILE = re.compile(
    r"mobi|iphone|ipod|windows phone|blackberry|\bbb10\b|opera mini|iemobile|kaios|symbian|\bdalvik/"
)
_ANDROID = re.compile(r"android")

_memo: dict[str, DeviceClass] = {}


def _classify(ua: str) -> DeviceClass:
    if _BOT.search(ua):
        return "bot"
    if _SMARTTV.search(ua):
        return "smarttv"
    if _TABLET.search(ua):
        return "tablet"
    if _MOBILE.search(ua):
        return "mobile"
    if _ANDROID.search(ua):
        return "tablet"  # Android browsers leave "Mobile" out on tablets (Google's own advice)
    return "desktop"


def classify_device(user_agent: str | None) -> DeviceClass:
    """The device class of a User-Agent value (None or empty: ``desktop``).

    Called by RECV once per request (for ``Edge-Viewer-Device``) and by ``ViewerRequest.device``. Pure and
    memoised: a User-Agent seen before costs one dict lookup.
    """
    if not user_agent:
        return "desktop"
    found = _memo.get(user_agent)
    if found is not None:
        return found
    found = _classify(user_agent[:_MAX_UA].lower())
    if len(_memo) >= _CACHE_SIZE:
        # Forget the oldest entry (dicts keep insertion order): bounded memory under many User-Agents.
        try:
            _memo.pop(next(iter(_memo)), None)
        except (RuntimeError, StopIteration):  # another thread (a sync edge function) changed it meanwhile
            _memo.clear()
    _memo[user_agent] = found
    return found
