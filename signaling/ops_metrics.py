"""Node metrics for the shipped ops pack (deploy/prometheus): build, library disk, TLS expiry.

All are read by one collector on the default registry, so ``/metrics`` shows:

* ``classroom_build_info{version,aiortc,av}`` (always 1): what runs where; the versions
  ``classroom doctor`` checks against pyproject's ranges.
* ``classroom_library_bytes``: size of the recording library folder (walked in a thread every
  ``LIBRARY_INTERVAL`` seconds, never on a scrape or on the event loop);
  ``classroom_library_quota_bytes``: ``--library-quota-gb`` (absent when there is no quota);
  ``classroom_library_filesystem_free_bytes`` / ``_size_bytes``: the library's filesystem
  (``statvfs`` at scrape time: one cheap system call).
* ``classroom_tls_certificate_expiry_timestamp_seconds``: the not-after time (Unix seconds)
  of the certificate ``--tls-cert`` serves, set at start and after each SIGHUP reload
  (absent without ``--tls-cert``, e.g. behind nginx: watch nginx's certificate there).

Hooks: :func:`library_watch` is a cleanup context of the app (one line in ``build_app``),
:func:`note_certificate` is called by ``signaling.tls.CertReloader``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

LIBRARY_INTERVAL = 60.0
"""Seconds between two walks of the library folder."""

DISTRIBUTION = "shared-classroom"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """The product's, aiortc's and PyAV's installed versions."""
    return {"version": _version(DISTRIBUTION), "aiortc": _version("aiortc"),
            "av": _version("av")}


def dir_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed; vanished files
    skipped: retention may delete while we walk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def certificate_not_after(cert: Path) -> float:
    """Not-after (Unix seconds) of the first certificate of a PEM file (the leaf)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(Path(cert).read_bytes())[0]
    return leaf.not_valid_after_utc.timestamp()


@dataclass
class _Library:
    path: Path
    quota_bytes: int | None
    used_bytes: int | None = None


class OpsCollector(Collector):
    """The ops-pack gauges, from values the hooks keep (nothing slow at scrape time)."""

    def __init__(self) -> None:
        self.build = versions()
        self.library: _Library | None = None
        self.cert_expiry: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        build = GaugeMetricFamily("classroom_build_info",
                                  "The running build: product, aiortc and PyAV versions (1)",
                                  labels=["version", "aiortc", "av"])
        build.add_metric([self.build["version"], self.build["aiortc"], self.build["av"]], 1)
        yield build
        library = self.library
        if library is not None:
            if library.used_bytes is not None:
                yield GaugeMetricFamily("classroom_library_bytes",
                                        "Bytes in the recording library folder",
                                        value=library.used_bytes)
            if library.quota_bytes:
                yield GaugeMetricFamily("classroom_library_quota_bytes",
                                        "The library quota (--library-quota-gb) in bytes",
                                        value=library.quota_bytes)
            try:
                fs = os.statvfs(library.path)
            except OSError:
                pass
            else:
                yield GaugeMetricFamily("classroom_library_filesystem_free_bytes",
                                        "Bytes free (for this user) on the library's "
                                        "filesystem", value=fs.f_bavail * fs.f_frsize)
                yield GaugeMetricFamily("classroom_library_filesystem_size_bytes",
                                        "Size of the library's filesystem in bytes",
                                        value=fs.f_blocks * fs.f_frsize)
        if self.cert_expiry:
            expiry = GaugeMetricFamily(
                "classroom_tls_certificate_expiry_timestamp_seconds",
                "Not-after time (Unix seconds) of the certificate served by --tls-cert",
                labels=["path"])
            for path, when in self.cert_expiry.items():
                expiry.add_metric([path], when)
            yield expiry


COLLECTOR = OpsCollector()
with contextlib.suppress(ValueError):  # a re-import (tests) finds it registered
    REGISTRY.register(COLLECTOR)


def note_certificate(cert: Path) -> None:
    """Record the not-after of the certificate now served from ``cert`` (never raises: a
    metric must not break a TLS reload)."""
    try:
        COLLECTOR.cert_expiry = {str(cert): certificate_not_after(cert)}
    except Exception as exc:  # unreadable, not PEM: the TLS loader reports that itself
        logger.warning("cannot read the certificate's expiry", extra={"cert": str(cert),
                                                                     "error": str(exc)})


def library_watch(config: Any,
                  interval: float = LIBRARY_INTERVAL) -> Callable[[Any], AsyncIterator[None]]:
    """An aiohttp cleanup context: walks ``config.library`` in a thread every ``interval``
    seconds for ``classroom_library_bytes`` while the app runs."""

    async def watch(_app: Any) -> AsyncIterator[None]:
        gb = getattr(config, "library_quota_gb", None)
        library = _Library(Path(config.library), int(gb * 1e9) if gb else None)
        COLLECTOR.library = library

        async def loop() -> None:
            while True:
                try:
                    library.used_bytes = await asyncio.to_thread(dir_size, library.path)
                except Exception:
                    logger.exception("library size walk failed")
                await asyncio.sleep(interval)

        task = asyncio.get_running_loop().create_task(loop(), name="library-size")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if COLLECTOR.library is library:
                COLLECTOR.library = None

    return watch
