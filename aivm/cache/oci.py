"""The OCI registry backend of binary caches (`oci://REGISTRY/REPOSITORY`), via `oras`.

One artifact per entry, tagged by its key and a digest of its name (`record_id`): the
manifest's config blob is the entry's record (aivm/cache/backends.py Record: manifest,
signatures, items) and each file is a layer whose annotation names its blake3, so
registries deduplicate equal files by sha256 and a second VM on the same image uploads
only what is new. Files are uploaded in chunks (PATCH) and downloaded as streams: a
multi-GiB qcow2 is never in memory.

Plain http is used for loopback registries (localhost, 127.0.0.0/8, ::1), as Docker does;
https elsewhere. Credentials: AIVM_OCI_USER and AIVM_OCI_PASSWORD (basic auth, e.g. an
htpasswd-protected registry), else the Docker config's logins and anonymous tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from aivm.cache.backends import Record, Unreachable, record_id
from aivm.cache.files import Item
from aivm.errors import StoreError
from aivm.recipes.fetch import sha256_file

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.aivm.entry.v1"
RECORD_TYPE = "application/vnd.aivm.entry.record.v1+json"
FILE_TYPE = "application/vnd.aivm.entry.file.v1"
BLAKE3 = "org.aivm.blake3"
UPLOAD_CHUNK = 64 << 20


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OciCache:
    def __init__(self, url: str, host: str, repository: str) -> None:
        self.url = url
        self.host = host
        self.repository = repository
        self._registry: Any = None
        self._layers: dict[str, dict[str, Any]] = {}  # blake3 -> layer descriptor

    # connection -------------------------------------------------------------------
    def _client(self) -> Any:
        if self._registry is None:
            import oras.provider

            user, password = os.environ.get("AIVM_OCI_USER"), os.environ.get("AIVM_OCI_PASSWORD")
            registry = oras.provider.Registry(self.host, insecure=_loopback(self.host),
                                              auth_backend="basic" if user else "token")
            if user and password:
                registry.auth.set_basic_auth(user, password)
            self._probe(registry)
            self._registry = registry
        return self._registry

    def _probe(self, registry: Any) -> None:
        """One quick request (oras retries for minutes): an unreachable registry is told
        at once, so the build falls back without waiting."""
        import requests

        try:
            r = registry.session.get(f"{registry.prefix}://{self.host}/v2/", timeout=10,
                                     verify=registry._tls_verify)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.host}: {type(exc).__name__}",
                              hint="check the registry address and the network",
                              reason="cache-unreachable") from exc
        if r.status_code not in (200, 401):
            raise Unreachable(f"{self.host} answered /v2/ with HTTP {r.status_code}",
                              hint="is it an OCI registry?", reason="cache-unreachable")

    def _target(self, tag: str) -> Any:
        return self._client().get_container(f"{self.host}/{self.repository}:{tag}")

    def _request(self, url: str, method: str = "GET", **kw: Any) -> Any:
        import requests

        try:
            response = self._client().do_request(url, method, **kw)
        except (requests.RequestException, ValueError) as exc:
            raise Unreachable(f"{self.host}: {exc}", hint="check the registry",
                              reason="cache-unreachable") from exc
        if response.status_code in (401, 403):
            raise Unreachable(f"{self.host} refused the credentials (HTTP "
                              f"{response.status_code})", hint="set AIVM_OCI_USER and "
                              "AIVM_OCI_PASSWORD, or `docker login`", reason="cache-auth")
        return response

    # lookup / fetch -----------------------------------------------------------------
    def lookup(self, key: str, name: str) -> Record | None:
        registry = self._client()
        container = self._target(record_id(key, name))
        response = self._request(f"{registry.prefix}://{container.manifest_url()}",
                                 headers={"Accept": MANIFEST_TYPE})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Unreachable(f"{self.host}: manifest of {key[:12]}: HTTP "
                              f"{response.status_code}", hint="check the registry",
                              reason="cache-unreachable")
        manifest = response.json()
        config = self._request(f"{registry.prefix}://"
                               f"{container.get_blob_url(manifest['config']['digest'])}")
        if config.status_code != 200 or \
                hashlib.sha256(config.content).hexdigest() != \
                manifest["config"]["digest"].removeprefix("sha256:"):
            raise StoreError(f"{self.url}: the record of {key[:12]} does not match its digest",
                             hint="the registry is damaged or hostile", reason="cache-mismatch")
        for layer in manifest.get("layers", []):
            self._layers[layer.get("annotations", {}).get(BLAKE3, "")] = layer
        try:
            return Record.from_json(config.text)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.url}: the record of {key[:12]} is not readable: {exc}",
                             hint="push it again", reason="cache-mismatch") from exc

    def open_blob(self, item: Item) -> BinaryIO:
        layer = self._layers.get(item.blob)
        if layer is None:
            raise StoreError(f"{self.url}: no layer for {item.path}",
                             hint="push the entry again", reason="cache-mismatch")
        registry = self._client()
        container = self._target("latest")
        response = self._request(f"{registry.prefix}://"
                                 f"{container.get_blob_url(layer['digest'])}", stream=True)
        if response.status_code != 200:
            raise Unreachable(f"{self.host}: blob of {item.path}: HTTP {response.status_code}",
                              hint="check the registry", reason="cache-unreachable")
        response.raw.decode_content = True
        return response.raw  # type: ignore[no-any-return]

    # upload ---------------------------------------------------------------------------
    def upload(self, entry: Path, record: Record, advance: Callable[[int], None]) -> int:
        registry = self._client()
        container = self._target(record_id(record.manifest.key, record.manifest.name))
        layers, sent, seen = [], 0, set()
        for item in record.items:
            if item.type != "file" or item.blob in seen:
                continue
            seen.add(item.blob)
            layer = {"mediaType": FILE_TYPE, "size": item.size,
                     "digest": f"sha256:{sha256_file(entry / item.path)}",
                     "annotations": {BLAKE3: item.blob}}
            sent += self._put(registry, container, entry / item.path, layer)
            advance(item.size)
            layers.append(layer)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            fh.write(record.to_json())
        try:
            raw = Path(fh.name).read_bytes()
            config = {"mediaType": RECORD_TYPE, "size": len(raw),
                      "digest": f"sha256:{hashlib.sha256(raw).hexdigest()}"}
            sent += self._put(registry, container, Path(fh.name), config)
        finally:
            os.unlink(fh.name)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "artifactType": ARTIFACT_TYPE, "config": config, "layers": layers,
                    "annotations": {"org.aivm.key": record.manifest.key,
                                    "org.aivm.name": record.manifest.name,
                                    "org.aivm.kind": record.manifest.kind}}
        response = self._request(f"{registry.prefix}://{container.manifest_url()}", "PUT",
                                 headers={"Content-Type": MANIFEST_TYPE},
                                 data=json.dumps(manifest).encode())
        if response.status_code not in (200, 201):
            raise Unreachable(f"{self.host}: manifest upload: HTTP {response.status_code} "
                              f"{response.text[:200]}", hint="check the registry",
                              reason="cache-unreachable")
        return sent

    def _put(self, registry: Any, container: Any, path: Path, layer: dict[str, Any]) -> int:
        head = self._request(f"{registry.prefix}://{container.get_blob_url(layer['digest'])}",
                             "HEAD")  # also: refused credentials are told here, plainly
        if head.status_code == 200:
            return 0
        with _registry_errors(self.host):
            response = registry.upload_blob(str(path), container, layer, do_chunked=True,
                                            chunk_size=UPLOAD_CHUNK)
        if response.status_code not in (200, 201, 202):
            raise Unreachable(f"{self.host}: upload of {path.name}: HTTP "
                              f"{response.status_code}", hint="check the registry",
                              reason="cache-unreachable")
        return int(layer["size"])


@contextlib.contextmanager
def _registry_errors(host: str) -> Iterator[None]:
    """oras raises ValueError and requests' errors; they become one aivm error line."""
    import requests

    try:
        yield
    except (requests.RequestException, ValueError, OSError) as exc:
        raise Unreachable(f"{host}: {type(exc).__name__}: {str(exc)[:200]}",
                          hint="check the registry and its credentials",
                          reason="cache-unreachable") from exc
