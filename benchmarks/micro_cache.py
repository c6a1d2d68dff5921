"""Micro-benchmark of the per-request cache code: key building and the memory-tier lookup (not a test).

Run: ``python benchmarks/micro_cache.py``. Prints nanoseconds per call, best of several rounds, with a plain
``dict.get`` as the floor a Python lookup cannot beat. The entry codec (shared-tier hits) is timed too.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from multidict import CIMultiDict, CIMultiDictProxy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.cache import keys as keys_module
from proxy.cache.entry import CacheEntry, decode_entry, encode_entry
from proxy.cache.keys import KeyBuilder, QueryExcept, variant_key
from proxy.cache.memory import MemoryStore


@dataclass(frozen=True)
class Policy:
    query: Literal["all", "none"] | tuple[str, ...] | QueryExcept = "all"
    headers: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    sort_query: bool = False


@dataclass(frozen=True)
class Except:
    except_: tuple[str, ...]


def ns_per_call(fn: Callable[[], object], rounds: int = 7) -> float:
    """Best-of-``rounds`` nanoseconds per call of ``fn`` (the loop overhead of timeit included)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, 200_000)
    return min(timer.repeat(repeat=rounds, number=number)) / number * 1e9


def main() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Host", "Example.com"),
                ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
                ("Accept", "text/html,application/xhtml+xml"),
                ("Accept-Encoding", "gzip, deflate, br"),
                ("Accept-Language", "en-GB,en;q=0.8"),
                ("Cookie", "_ga=GA1.2.3; session=abc123; theme=dark"),
            ]
        )
    )
    host, path = "example.com", "/static/app.3f9a1c.js"
    all_raw = KeyBuilder(Policy())
    all_sorted = KeyBuilder(Policy(sort_query=True))
    only = KeyBuilder(Policy(query=("v", "lang")))
    excepting = KeyBuilder(Policy(query=Except(("utm_source", "utm_medium")), sort_query=True))
    fields = KeyBuilder(Policy(headers=("accept-language",), cookies=("session",)))

    store = MemoryStore(max_bytes=512 * 1024 * 1024, max_object_bytes=10 * 1024 * 1024)
    body = b"x" * 1024
    entry = CacheEntry(
        status=200,
        headers=(
            ("Content-Type", "application/javascript"),
            ("ETag", '"3f9a1c"'),
            ("Cache-Control", "max-age=60"),
        ),
        body=body,
        request_time=1.7e9,
        response_time=1.7e9,
        initial_age=0.0,
        ttl=60.0,
        vary=("accept-encoding",),
    )
    for i in range(10_000):
        store.set(f"example.com/file{i}", entry)
    hit_key = all_raw.key(host, path, "", headers)
    store.set(hit_key, entry)
    plain = {f"example.com/file{i}": entry for i in range(10_000)}
    plain[hit_key] = entry
    encoded = encode_entry(entry)

    def memo_miss() -> object:
        keys_module._HOSTS.clear()  # force the Host normalisation path every call
        return all_raw.key("Example.COM:80", path, "", headers)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("floor: dict.get hit", lambda: plain.get(hit_key)),
        ("KeyBuilder.key  all, no query (fast path)", lambda: all_raw.key(host, path, "", headers)),
        (
            "KeyBuilder.key  all, 'v=3&lang=en' (fast path)",
            lambda: all_raw.key(host, path, "v=3&lang=en", headers),
        ),
        ("KeyBuilder.key  all+sort, 'v=3' (fast path)", lambda: all_sorted.key(host, path, "v=3", headers)),
        (
            "KeyBuilder.key  all+sort, 'v=3&lang=en'",
            lambda: all_sorted.key(host, path, "v=3&lang=en", headers),
        ),
        ("KeyBuilder.key  [v, lang], 3 params", lambda: only.key(host, path, "v=3&lang=en&x=1", headers)),
        (
            "KeyBuilder.key  except+sort, 4 params",
            lambda: excepting.key(host, path, "b=1&utm_source=x&a=2&c", headers),
        ),
        ("KeyBuilder.key  1 header + 1 cookie", lambda: fields.key(host, path, "", headers)),
        ("KeyBuilder.key  Host not memoised (memo cleared)", memo_miss),
        (
            "variant_key     Vary: accept-encoding",
            lambda: variant_key(hit_key, ("accept-encoding",), headers),
        ),
        ("MemoryStore.get hit (10k entries)", lambda: store.get(hit_key)),
        ("MemoryStore.get miss", lambda: store.get("example.com/nope")),
        ("key + get (a whole memory hit lookup)", lambda: store.get(all_raw.key(host, path, "", headers))),
        ("encode_entry    1 KiB body, 3 headers", lambda: encode_entry(entry)),
        ("decode_entry    1 KiB body, 3 headers", lambda: decode_entry(encoded)),
    ]
    print(f"Python {sys.version.split()[0]}  (ns per call, best of 7 rounds)")
    for label, fn in cases:
        print(f"  {label:<50} {ns_per_call(fn):8.0f} ns")


if __name__ == "__main__":
    main()
