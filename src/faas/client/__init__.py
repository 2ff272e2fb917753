"""The Python client of a faas server; the ``faas`` CLI's client commands use it.

    resolve_url(flag, settings)         --url > FAAS_URL > http://FAAS_HOST:FAAS_GATEWAY_PORT
    FaasClient(base_url, transport=)    deploy, list_functions, get_function, get_version,
                                        delete_function, invoke, invoke_async,
                                        invocation, invocations, cancel_invocation
                                        (raises ApiError, ServerUnreachable: see
                                        faas.errors)
    load_manifest(folder) -> Manifest   a folder's faas.toml, checked (format in manifest.py)
    pack_function_folder(folder, exclude) -> (bytes, BundleInfo)   the bundle to upload
"""

from faas.client.api import FaasClient
from faas.client.folder import is_excluded, pack_function_folder
from faas.client.manifest import (
           DEFAULT_EXCLUDE,
           MANIFEST_NAME,
           Manifest,
           load_manifest,
           parse_manifest,
)
from faas.client.url import resolve_url

__all__ = ["DEFAULT_EXCLUDE", "MANIFEST_NAME", "FaasClient", "Manifest", "is_excluded",
           "load_manifest", "pack_function_folder", "parse_manifest", "resolve_url"]
