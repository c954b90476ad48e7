"""The OHIF viewer: the prebuilt ``@ohif/app`` package, fetched from the npm registry
over plain HTTPS (no Node), checked against a pinned SHA-512 and installed under the
data directory, where the HTTP door serves it at ``/viewer`` (:mod:`pacsnode.web.viewer`).

OHIF's prebuilt ``dist/`` expects to be served at the root of a site: its
``index.html``, its stylesheet and webpack's runtime name ``/`` as their public path.
Installing makes them name ``/viewer/`` instead (what building OHIF with
``PUBLIC_URL=/viewer/`` would have produced), leaves out the ONNX runtime (``ort/``,
for AI tools) and the source maps, drops the service worker (it would cache the
archive's pages under the wrong paths), and writes an ``app-config.js`` whose data
source is this archive's DICOMweb on the same origin. Every step either applies
exactly as expected or fails the install, naming the file: a different OHIF build is
never half-adapted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

VERSION = "3.13.2"
TARBALL_URL = f"https://registry.npmjs.org/@ohif/app/-/app-{VERSION}.tgz"
INTEGRITY = (
    "sha512-"
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
"""The registry's ``dist.integrity`` of the tarball: what we install is exactly this."""
PREFIX = "/viewer"
CACHE_ENV = "PACSNODE_CACHE_DIR"
DOWNLOAD_TIMEOUT = 60.0
_LEFT_OUT = re.compile(r"(^ort/|\.map$|^sw\.js$|^init-service-worker\.js$|^_headers$|^_redirects$)")
_PUBLIC_PATH = '__webpack_require__.p = "/";'
_SERVICE_WORKER = '<script rel="preload" as="script" type="module" src="/init-service-worker.js">'

APP_CONFIG = """\
/* Written by 'pacsnode viewer install': OHIF on this archive's DICOMweb, same origin. */
window.config = {
  routerBasename: '%(prefix)s',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 75, prefetch: 25 },
  defaultDataSourceName: 'pacsnode',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacsnode',
      configuration: {
        friendlyName: 'pacsnode',
        name: 'pacsnode',
        wadoUriRoot: '/wado',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        supportsStow: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        staticWado: false,
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


class ViewerError(Exception):
    """The viewer cannot be installed; one line naming the URL, file or reason."""


def install_dir(data_dir: Path) -> Path:
    """Where the viewer of this version lives in a data directory."""
    return data_dir / "viewer" / f"ohif-{VERSION}"


def installed(data_dir: Path) -> Path | None:
    """The installed viewer's directory, if the install finished."""
    folder = install_dir(data_dir)
    return folder if (folder / "index.html").is_file() else None


def cache_path() -> Path:
    """Where the downloaded tarball is kept, so that one machine downloads it once:
    ``$PACSNODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pacsnode``, else ``~/.cache/pacsnode``."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "pacsnode")
    return Path(folder) / f"ohif-app-{VERSION}.tgz"


def verified(data: bytes) -> bool:
    """Whether ``data`` is the pinned tarball."""
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    return f"sha512-{digest}" == INTEGRITY


def tarball(cache: Path | None = None, url: str = TARBALL_URL) -> bytes:
    """The pinned tarball: from the cache when it is there and intact, else downloaded
    (and then cached)."""
    cache = cache or cache_path()
    if cache.is_file():
        data = cache.read_bytes()
        if verified(data):
            return data
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "pacsnode"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ViewerError(f"cannot download {url}: {reason}") from exc
    if not verified(data):
        raise ViewerError(f"{url} does not have the pinned SHA-512 ({INTEGRITY[:20]}…)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(cache)
    return data


def install(data_dir: Path, data: bytes) -> Path:
    """Unpack the verified tarball ``data`` into the data directory, adapted to be
    served at :data:`PREFIX`; replaces an earlier install of this version."""
    target = install_dir(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    try:
        _extract(data, staging)
        _adapt(staging)
        (staging / "app-config.js").write_text(APP_CONFIG % {"prefix": PREFIX})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(data: bytes, into: Path) -> None:
    """``package/dist/`` of the tarball, less what :data:`_LEFT_OUT` names; regular
    files only, none outside ``into``."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/")
            if not name.startswith("dist/") or not member.isfile():
                continue
            relative = name.removeprefix("dist/")
            if _LEFT_OUT.search(relative):
                continue
            path = (into / relative).resolve()
            if not path.is_relative_to(into.resolve()):
                raise ViewerError(f"the tarball names a file outside dist/: {member.name}")
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source.read())
        if not (into / "index.html").is_file():
            raise ViewerError("the tarball has no dist/index.html")


def _adapt(folder: Path) -> None:
    """Make the public path :data:`PREFIX` wherever the build wrote ``/``."""
    index = folder / "index.html"
    page = _replaced(index, index.read_text(), _SERVICE_WORKER + "</script>", "")
    page = _replaced(index, page, 'window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}/"')
    page = re.sub(r'(href|src)="/(?!/)', rf'\1="{PREFIX}/', page)
    index.write_text(page)
    bundles = [path for path in folder.glob("*.js") if _PUBLIC_PATH in path.read_text()]
    if not any(path.name.startswith("app.bundle.") for path in bundles):
        raise ViewerError(f"no app bundle in {folder} sets webpack's public path")
    for path in bundles:
        path.write_text(
            path.read_text().replace(_PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}/";')
        )
    for path in folder.glob("*.css"):
        path.write_text(re.sub(r"url\(/(?!/)", f"url({PREFIX}/", path.read_text()))
    manifest = folder / "manifest.json"
    if manifest.is_file():
        manifest.write_text(manifest.read_text().replace('"/assets/', f'"{PREFIX}/assets/'))


def _replaced(path: Path, text: str, old: str, new: str) -> str:
    if old not in text:
        raise ViewerError(f"{path.name} of OHIF {VERSION} lacks {old!r}: not the expected build")
    return text.replace(old, new)
