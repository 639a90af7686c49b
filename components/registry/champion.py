"""A model's champion, ready to predict, loaded only from the bytes approved at registration.

Registration records the digest of the files a version serves (its ``wikilm.serving_digest``
tag, :func:`components.registry.packaging.serving_digest`). Loading the champion resolves
the alias to its version and that digest (:mod:`components.registry.resolve`, without
MLflow), then takes the graph, ``tokenizer.json`` and ``serving.json`` from a local cache
keyed by the digest (``WIKILM_MODEL_CACHE``, by default ``~/.cache/wikilm/models``). Only on
a miss is MLflow imported, to download them from the version's logged model; they are
cached only once their digest matches. Files are hashed every time they are loaded (they
are small) and the very bytes hashed are the ones loaded, so a copy changed on the store or
in the cache is never served. The graph runs in onnxruntime; nothing is unpickled.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from components.core.artifacts import atomic_dir
from components.core.tracking_server import redacted
from components.registry.packaging import DIGEST_TAG, serving_digest
from components.registry.resolve import Resolved, resolve
from components.registry.store import CHAMPION, CLASSIFIER, RegistryError
from components.serving.predictor import (
    FILE_NAMES,
    ROLES,
    Classifier,
    LanguageModel,
    ServedFiles,
)

log = logging.getLogger(__name__)

CACHE_ENV = "WIKILM_MODEL_CACHE"


def cache_root() -> Path:
    """Where verified model files are kept: ``WIKILM_MODEL_CACHE``, else the user's cache."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache/wikilm/models"


def champion_predictor(
    uri: str, model: str = CLASSIFIER, alias: str = CHAMPION, *, score_untagged: bool = False
) -> Classifier | LanguageModel | None:
    """The version ``alias`` names, loaded from its verified files (None: no such alias).

    ``uri`` is the tracking store's. A :class:`Classifier` for the classifier, a
    :class:`LanguageModel` for the LM. ``score_untagged`` lets a version registered before
    digests were recorded be loaded from its files as they are, which only the gate should
    do (nothing in them runs code; serving refuses them).

    Raises:
        RegistryError: the version has no digest tag, or its files do not match it.
        Unreachable: the tracking server did not answer.
    """
    resolved = resolve(uri, model, alias)
    if resolved is None:
        return None
    if resolved.digest is not None:
        served = verified_files(uri, resolved)
    elif score_untagged:
        log.warning(
            "%s v%s has no serving digest: its files are used unverified", model, resolved.version
        )
        served = download(uri, resolved)
    else:
        raise RegistryError(
            f"{model} v{resolved.version} ({alias}) was registered without a serving digest "
            f"({DIGEST_TAG}), so its files cannot be checked and it is not served: register "
            "the export again (`wikilm promote`, or `wikilm run`)"
        )
    return Classifier(served) if model == CLASSIFIER else LanguageModel(served)


def verified_files(uri: str, resolved: Resolved) -> ServedFiles:
    """The files whose digest is the version's: from the cache, else downloaded and cached.

    Raises:
        RegistryError: the store's files do not match the digest (nothing is cached).
    """
    entry = cache_root() / str(resolved.digest)
    cached = read_entry(entry)
    if cached is not None and serving_digest(cached) == resolved.digest:
        return cached
    if cached is not None:
        log.warning("%s changed since it was cached: downloading it again", entry)
    served = download(uri, resolved)
    found = serving_digest(served)
    if found != resolved.digest:
        raise RegistryError(
            f"{resolved.model} v{resolved.version}: its files' digest {found} is not the "
            f"{resolved.digest} recorded at registration ({DIGEST_TAG}): they changed on the "
            "store since, and are neither loaded nor cached"
        )
    store(entry, served)
    return served


def store(entry: Path, served: ServedFiles) -> None:
    """Cache verified files; a cache that cannot be written only costs later downloads."""
    try:
        with atomic_dir(entry) as folder:  # a crash leaves the previous entry, or none
            for name, data in served.named():
                (folder / name).write_bytes(data)
    except OSError as error:
        log.warning(
            "the model cache %s cannot be written (%s): set %s", entry.parent, error, CACHE_ENV
        )


def read_entry(entry: Path) -> ServedFiles | None:
    """The files of a cache entry, or None when it is missing or incomplete."""
    try:
        return ServedFiles(*(entry.joinpath(name).read_bytes() for name in FILE_NAMES))
    except OSError:
        return None


def download(uri: str, resolved: Resolved) -> ServedFiles:
    """The served files of the version's logged model, as its ``MLmodel`` names them.

    Raises:
        RegistryError: the store does not hand them out.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # small files
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    location = client.get_model_version_download_uri(resolved.model, resolved.version)
    try:
        with tempfile.TemporaryDirectory(prefix="wikilm-download-") as folder:
            return _fetch_served(uri, location.rstrip("/"), Path(folder))
    except (MlflowException, OSError, KeyError) as error:
        # MLflow lists each failed file on lines of its own: the last line says why.
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise RegistryError(
            f"{resolved.model} v{resolved.version}: its files cannot be downloaded from "
            f"{redacted(location)}: {lines[-1] if lines else type(error).__name__}"
        ) from None


def _fetch_served(uri: str, location: str, folder: Path) -> ServedFiles:
    """Download ``MLmodel``, then the three files its pyfunc flavour names, into ``folder``."""
    import yaml
    from mlflow.artifacts import download_artifacts

    def fetch(path: str) -> Path:
        local = download_artifacts(f"{location}/{path}", dst_path=str(folder), tracking_uri=uri)
        return Path(local)

    flavor = yaml.safe_load(fetch("MLmodel").read_text(encoding="utf-8"))["flavors"]
    logged = flavor["python_function"]["artifacts"]
    return ServedFiles(**{role: fetch(logged[role]["path"]).read_bytes() for role in ROLES})
