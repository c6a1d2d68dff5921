"""The HTTPS listener's TLS context (``server.tls``), and picking up renewed certificate files.

``TlsContext(cert, key)`` is created by ``proxy.app.Edge`` when ``server.tls`` is set; ``watch()`` runs as
an owned task and reloads the certificate chain into the same ``ssl.SSLContext`` when either file changes
(new handshakes use the new certificate; established connections keep theirs), so a renewed certificate
needs no restart. A renewal that cannot be loaded (half-written files) is retried at the next check and the
old certificate stays in use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

log = logging.getLogger("edgeproxy")

CHECK_INTERVAL = 5.0


class TlsContext:
    """A server-side TLS context for one certificate and key pair."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["h2", "http/1.1"])  # RFC 9113 §3.2: h2 preferred; the listener picks
        self.context.load_cert_chain(cert, key)  # a bad pair fails at start-up, with the file names
        self._stamp = self._files_stamp()
        self.reloads = 0

    def _files_stamp(self) -> tuple[float, float, int, int]:
        cert, key = os.stat(self.cert), os.stat(self.key)
        return (cert.st_mtime, key.st_mtime, cert.st_size, key.st_size)

    def reload_if_changed(self) -> bool:
        """Load the files again when they changed since the last load; True when a new pair is in use."""
        try:
            stamp = self._files_stamp()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning(
                "TLS certificate %s changed but could not be loaded (%s); keeping the old one", self.cert, exc
            )
            return False
        self._stamp = stamp
        self.reloads += 1
        log.warning("TLS certificate reloaded from %s", self.cert)
        return True

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        """Check the files every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
