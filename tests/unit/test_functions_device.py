"""Device classes from real User-Agent strings (proxy.functions.device)."""

from __future__ import annotations

import pytest

from proxy.functions import device as device_module
from proxy.functions.device import DEVICE_CLASSES, classify_device

MOBILE = [
    # iPhone Safari, iPod, Chrome on iOS
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPod touch; CPU iPhone OS 12_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/12.1.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/123.0.6312.52 Mobile/15E148 Safari/604.1",
    # Android phones: Chrome, Samsung Internet, Firefox
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.6312.80 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:124.0) Gecko/124.0 Firefox/124.0",
    # A phone whose brand ends in "bot" is still a phone
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/96.0.4664.45 Mobile Safari/537.36",
    # Opera Mini, Windows Phone, BlackBerry, KaiOS, a Tizen phone, an Android app client
    "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 "
    "Version/10.54",
    "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977",
    "Mozilla/5.0 (BB10; Touch) AppleWebKit/537.10+ (KHTML, like Gecko) Version/10.0.9.2372 "
    "Mobile Safari/537.10+",
    "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i;Android; rv:48.0) Gecko/48.0 Firefox/48.0 "
    "KAIOS/2.5",
    "Mozilla/5.0 (Linux; Tizen 2.3; SAMSUNG SM-Z130H) AppleWebKit/537.3 (KHTML, like Gecko) Version/2.3 "
    "Mobile Safari/537.3",
    "Dalvik/2.1.0 (Linux; U; Android 11; SM-G991B Build/RP1A.200720.012)",
]

TABLET = [
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    # Android tablets leave "Mobile" out
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/110.0.5481.153 Safari/537.36",
    "Mozilla/5.0 (Android 13; Tablet; rv:124.0) Gecko/124.0 Firefox/124.0",
    # Kindle Fire (Silk) and a Kindle e-reader
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 "
    "like Chrome/120.0.6099.230 Safari/537.36",
    "Mozilla/5.0 (X11; U; Linux armv7l like Android; en-us) AppleWebKit/531.2+ (KHTML, like Gecko) "
    "Version/5.0 Safari/533.2+ Kindle/3.0+",
]

DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36",
    # An old Windows "Tablet PC" is a desktop browser
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2; Tablet PC 2.0)",
    # Unknown things and nothing at all are desktops
    "SomethingNew/1.0",
    "",
]

SMARTTV = [
    "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV "
    "Safari/537.36",
    "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 "
    "Safari/537.36 WebAppManager",
    "AppleCoreMedia/1.0.0.17K449 (Apple TV; U; CPU OS 13_4 like Mac OS X; en_us)",
    "AppleTV11,1/11.1",
    "Roku/DVP-9.10 (519.10E04111A)",
    "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/91.0.4472.120 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36 "
    "CrKey/1.56.500000 DeviceType/AndroidTV",
    "Mozilla/5.0 (Linux; Android 11; BRAVIA 4K GB ATV3 Build/RTM5.230302.009) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/108.0.5359.128 Safari/537.36",
    "Mozilla/5.0 (PlayStation 5 3.11) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
]

BOT = [
    # Crawlers, including Googlebot's smartphone crawler (a bot first, whatever device it claims)
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.6312.86 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; +https://openai.com/gptbot)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/123.0.0.0 "
    "Safari/537.36",
    # HTTP libraries and command-line clients
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Python-urllib/3.11",
    "Python/3.11 aiohttp/3.9.3",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Java/17.0.2",
    "libwww-perl/6.72",
    "axios/1.6.8",
    "PostmanRuntime/7.37.0",
    "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.22621.2506",
]

TABLE = (
    [(ua, "mobile") for ua in MOBILE]
    + [(ua, "tablet") for ua in TABLET]
    + [(ua, "desktop") for ua in DESKTOP]
    + [(ua, "smarttv") for ua in SMARTTV]
    + [(ua, "bot") for ua in BOT]
)


@pytest.mark.parametrize(("user_agent", "expected"), TABLE, ids=[f"{e}:{ua[:48]}" for ua, e in TABLE])
def test_classify(user_agent: str, expected: str) -> None:
    assert classify_device(user_agent) == expected


def test_missing_user_agent_is_desktop() -> None:
    assert classify_device(None) == "desktop"


def test_the_classes() -> None:
    assert {"mobile", "tablet", "desktop", "smarttv", "bot"} == DEVICE_CLASSES


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "_memo", {})
    monkeypatch.setattr(device_module, "_CACHE_SIZE", 8)
    for n in range(50):
        assert classify_device(f"Agent/{n}") == "desktop"
    assert len(device_module._memo) == 8
    # The newest are kept, the oldest forgotten.
    assert "Agent/49" in device_module._memo
    assert "Agent/0" not in device_module._memo


def test_memo_answers_like_the_table() -> None:
    user_agent = MOBILE[0]
    assert classify_device(user_agent) == classify_device(user_agent) == "mobile"


def test_only_the_start_of_a_huge_user_agent_is_read() -> None:
    # A crawler name past the first 512 characters is not looked for: the work per request is bounded.
    assert classify_device("x" * 600 + " Googlebot/2.1") == "desktop"
    assert classify_device("Googlebot/2.1 " + "x" * 600) == "bot"
