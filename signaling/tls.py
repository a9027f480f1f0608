"""https and wss on the serving port: the server's SSL context and its reload on SIGHUP.

Browsers give cameras only to secure pages, so a teacher console opened from another
machine needs https. ``load_context`` builds the context once (bad or unreadable files
raise ``TlsError`` with a one-line message, for exit code 2). ``CertReloader`` loads the
files again into the *same* context on SIGHUP: connections already open keep the session
they negotiated (their WebSockets and media go on), every new handshake gets the new
certificate. A reload that fails (a half-written file, a key that does not match) is logged
and the old certificate stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from pathlib import Path

from .ops_metrics import note_certificate

logger = logging.getLogger(__name__)


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message is one line for a person."""


def _load_into(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    for label, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsError(f"cannot read TLS {label} {path}: {exc.strerror or exc}") from None
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise TlsError(f"unusable TLS certificate {cert} / key {key} (a PEM certificate and "
                       f"its matching unencrypted PEM key are needed): {reason}") from None
    except ValueError as exc:  # e.g. an encrypted key (no password is asked for)
        raise TlsError(f"unusable TLS key {key}: {exc}") from None


def _new_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def load_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with ``cert`` (PEM, chain first) and ``key``; TlsError if unusable."""
    context = _new_context()
    _load_into(context, cert, key)
    return context


class CertReloader:
    """Reloads ``cert``/``key`` into a live context on SIGHUP (or when ``reload`` is called)."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self.reloads = 0
        note_certificate(cert)  # classroom_tls_certificate_expiry_timestamp_seconds

    async def reload(self) -> bool:
        """Check the files on a scratch context (in a thread), then load them into the live
        one; False (and the old certificate kept) when they are not usable."""
        try:
            await asyncio.to_thread(load_context, self.cert, self.key)
            _load_into(self.context, self.cert, self.key)
        except TlsError as exc:
            logger.error("TLS reload failed, keeping the old certificate: %s", exc)
            return False
        self.reloads += 1
        note_certificate(self.cert)
        logger.info("TLS certificate reloaded", extra={"cert": str(self.cert),
                                                        "reloads": self.reloads})
        return True

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (systemd's ExecReload sends it)."""
        tasks: set[asyncio.Task[bool]] = set()

        def on_hup() -> None:
            task = loop.create_task(self.reload(), name="tls-reload")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
