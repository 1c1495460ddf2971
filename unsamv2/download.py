"""Resumable, verified downloads (standard library ``urllib`` only) and checks for files users must supply.

:func:`download_file` streams into ``<dest>.part``, resumes an interrupted transfer with an HTTP ``Range``
request, verifies size and SHA-256, and only then renames the part file to ``dest``. So ``dest`` existing
means "complete and verified" — the property Snakemake relies on.

Some inputs cannot be downloaded by a script (the SA-1B links file sits behind a licence form, DINOv3 weights
are gated); :func:`require_user_file` turns their absence into an error saying what the file is and where
to get it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

__all__ = [
    "DownloadError",
    "UserSuppliedFileMissing",
    "download_file",
    "download_from_spec",
    "require_user_file",
    "sha256_file",
]

log = logging.getLogger(__name__)

_USER_AGENT = "unsamv2-downloader/0.1 (+python-urllib)"
_SPEC_KEYS = frozenset({"name", "url", "sha256", "size", "filename", "note"})
# HTTP statuses worth retrying: timeouts, rate limits and server-side failures. Everything else in 4xx
# (403 from an expired signed URL, 404) will not get better by asking again.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """A download failed for good (after retries), or its result did not verify."""


class UserSuppliedFileMissing(FileNotFoundError):
    """A file the user has to obtain by hand (licence form, gated weights) is missing."""


class _TransientError(Exception):
    """Internal: this attempt failed in a way that a retry (with resume) may fix."""


class _DropAuthOnCrossHostRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never forward ``Authorization`` to a different host.

    urllib copies every request header to the redirected request. Hugging Face answers a gated file with a
    redirect to a signed CDN URL: the token must not leak there, and signed-URL stores may reject a request
    that carries two authentication mechanisms. (``requests`` strips the header the same way.)
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc.lower()
            new_host = urllib.parse.urlsplit(new.full_url).netloc.lower()
            if old_host != new_host:
                new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_DropAuthOnCrossHostRedirect)


def require_user_file(path: str | os.PathLike[str], what: str, where_to_get: str) -> Path:
    """Return ``path`` if it exists (file or directory); otherwise raise :class:`UserSuppliedFileMissing`.

    ``what`` describes the file ("SA-1B links file (TSV of tar names and signed URLs)"), ``where_to_get`` says
    how to obtain it ("accept the licence at https://... and save the links file here").
    """
    p = Path(path).expanduser()
    if p.exists():
        return p
    raise UserSuppliedFileMissing(
        f"missing {what}: expected at {p}. This file cannot be downloaded automatically; {where_to_get}"
    )


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (constant memory for multi-GB tars)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, url: str, sha256: str | None, size: int | None) -> None:
    """Raise DownloadError if ``path`` does not have the expected size / SHA-256."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(f"{url} -> {path}: size mismatch: expected {size} bytes, got {actual_size}")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256.lower():
            raise DownloadError(f"{url} -> {path}: SHA-256 mismatch: expected {sha256.lower()}, got {got}")


def _matches(path: Path, sha256: str | None, size: int | None) -> bool:
    try:
        _verify(path, "", sha256, size)
    except DownloadError:
        return False
    return True


def _copy_stream(src: BinaryIO, dst: BinaryIO, chunk_size: int, bar: tqdm, limit: int | None) -> int:
    """Copy until EOF (or ``limit`` bytes); return the number of bytes copied."""
    copied = 0
    while limit is None or copied < limit:
        want = chunk_size if limit is None else min(chunk_size, limit - copied)
        chunk = src.read(want)
        if not chunk:
            break
        dst.write(chunk)
        copied += len(chunk)
        bar.update(len(chunk))
    return copied


def _attempt_file_url(url: str, part: Path, size: int | None, chunk_size: int, progress: bool) -> None:
    """Copy a ``file://`` URL into ``part``, resuming at the part file's current length."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"{url}: local source file {source} does not exist")
    total = source.stat().st_size
    if size is not None and total != size:
        raise DownloadError(f"{url}: source has {total} bytes, expected {size}")
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:
        part.unlink()
        offset = 0
    with (
        open(source, "rb") as src,
        open(part, "ab") as dst,
        tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.stem, disable=not progress
        ) as bar,
    ):
        src.seek(offset)
        _copy_stream(src, dst, chunk_size, bar, limit=None)
        dst.flush()
        os.fsync(dst.fileno())


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _attempt_http(
    url: str,
    part: Path,
    size: int | None,
    chunk_size: int,
    timeout: float,
    progress: bool,
    extra_headers: Mapping[str, str],
) -> None:
    """One HTTP(S) attempt: resume or (re)start ``part``; raise _TransientError if the body came up short."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        log.warning("%s is longer than the expected %d bytes; starting over", part, size)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # a previous attempt finished the body; verification decides whether it is good

    headers = {"User-Agent": _USER_AGENT, **extra_headers, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            # Range not satisfiable: the part file is already as long as (or longer than) the resource.
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            if total is not None and total == offset:
                return
            part.unlink()
            raise _TransientError(f"HTTP 416 for a resume at byte {offset}; restarting from zero") from exc
        if exc.code in _TRANSIENT_HTTP:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
        hint = " (signed URLs expire: fetch a fresh link)" if exc.code in (401, 403) else ""
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _TransientError(f"connection failed: {exc}") from exc

    with response:
        status = response.status
        length_header = response.headers.get("Content-Length")
        body_length = int(length_header) if length_header is not None else None
        if status == 206 and offset > 0:
            start, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _TransientError(f"server resumed at byte {start}, asked for {offset}; restarting")
            mode = "ab"
        elif status == 200:
            if offset > 0:
                log.info("%s ignored the Range request; restarting %s from zero", url, part)
            offset = 0
            total = body_length
            mode = "wb"  # the body is the whole file: overwrite the part
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {status}")
        if total is not None and size is not None and total != size:
            raise DownloadError(
                f"{url}: server reports {total} bytes, expected {size} (wrong or changed file?)"
            )
        expected_total = total if total is not None else size

        with (
            open(part, mode) as dst,
            tqdm(
                total=expected_total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.stem,
                disable=not progress,
            ) as bar,
        ):
            try:
                copied = _copy_stream(response, dst, chunk_size, bar, limit=body_length)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise _TransientError(f"transfer interrupted after {bar.n} bytes: {exc}") from exc
            finally:
                dst.flush()
                os.fsync(dst.fileno())
        if body_length is not None and copied < body_length:
            raise _TransientError(
                f"connection closed early: got {offset + copied} of {offset + body_length} bytes"
            )
        if size is not None and offset + copied < size:
            raise _TransientError(f"body ended early: got {offset + copied} of {size} bytes")


def _parse_content_range(value: str) -> tuple[int | None, int | None]:
    match = _CONTENT_RANGE.match(value.strip())
    if not match:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _total_from_content_range(value: str) -> int | None:
    match = re.match(r"bytes\s+\*/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    size: int | None = None,
    *,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60,
    progress: bool = True,
    backoff_s: float = 1.0,
    headers: Mapping[str, str] | None = None,
) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` and return ``dest``.

    * If ``dest`` exists and matches ``size``/``sha256`` (when given), nothing is fetched.
    * Data goes to ``<dest>.part``; an existing part file is resumed with ``Range: bytes=N-`` (a server that
      answers 200 instead of 206 is handled by starting over).
    * A transfer that ends early (connection closed before ``Content-Length`` bytes, timeout, 5xx) is retried
      up to ``retries`` times, resuming each time, sleeping ``backoff_s * 2**i`` seconds in between. If it
      still fails, :class:`DownloadError` names the URL and ``dest``; the part file is kept to resume later.
    * The finished part file is checked against ``size`` and ``sha256``; on a mismatch it is deleted and
      :class:`DownloadError` reports expected vs got. Only a verified file is renamed to ``dest``.
    * ``headers`` are extra HTTP request headers (e.g. ``{"Authorization": "Bearer <token>"}`` for a gated
      Hugging Face file); ``Authorization`` is dropped when a redirect leads to another host.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if _matches(dest, sha256, size):
            log.info("%s already present and verified; skipping download", dest)
            return dest
        log.warning("%s exists but does not verify; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")

    failures: list[str] = []
    for attempt in range(retries + 1):
        try:
            if scheme == "file":
                _attempt_file_url(url, part, size, chunk_size, progress)
            else:
                _attempt_http(url, part, size, chunk_size, timeout, progress, headers or {})
            break
        except _TransientError as exc:
            failures.append(f"attempt {attempt + 1}: {exc}")
            log.warning("download %s -> %s: %s", url, dest, exc)
            if attempt < retries and backoff_s > 0:
                time.sleep(min(backoff_s * 2**attempt, 60.0))
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"download of {url} to {dest} failed after {retries + 1} attempts ({have} bytes kept in {part} "
            f"for a later resume): " + "; ".join(failures)
        )

    try:
        _verify(part, url, sha256, size)
    except DownloadError:
        part.unlink(missing_ok=True)  # a complete-but-wrong file must not be resumed next time
        raise
    os.replace(part, dest)
    return dest


def download_from_spec(spec: Mapping[str, Any], dest_dir: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Download one entry of a download registry into ``dest_dir``; return the file path.

    ``spec`` keys: ``name`` and ``url`` (required), ``sha256``, ``size``, ``filename`` (defaults to the last
    URL path component) and ``note`` (a human hint, e.g. "gated: request access at ..."; appended to errors).
    Unknown keys are rejected so that a typo such as ``sha265`` cannot silently disable verification. Extra
    keyword arguments go to :func:`download_file`.
    """
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f"download spec {spec.get('name', '?')!r}: unknown keys {sorted(unknown)}; "
            f"allowed: {sorted(_SPEC_KEYS)}"
        )
    for key in ("name", "url"):
        if not spec.get(key):
            raise ValueError(f"download spec {spec!r:.200}: missing required key {key!r}")
    url = str(spec["url"])
    filename = spec.get("filename") or urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    if not filename:
        raise ValueError(
            f"download spec {spec['name']!r}: cannot derive a file name from {url}; set 'filename'"
        )
    size = spec.get("size")
    try:
        return download_file(
            url,
            Path(dest_dir) / filename,
            sha256=spec.get("sha256"),
            size=int(size) if size is not None else None,
            **kwargs,
        )
    except DownloadError as exc:
        note = spec.get("note")
        if note:
            raise DownloadError(f"{spec['name']}: {exc} [note: {note}]") from exc
        raise
