"""Code bundles: a function's files, uploaded as an archive, stored and unpacked safely.

    BundleStore(data_dir, limits)   content-addressed store under <data_dir>/bundles
      await put(chunks, deadline=)  -> BundleInfo (sha256, packed_bytes, unpacked_bytes, files)
      path(sha) / archive_path(sha) / exists(sha) / info(sha) / remove(sha)
      sweep_dead_instances()        work folders of servers that died
    pack_folder(folder, out, limits) -> BundleInfo   deterministic tar.gz for the CLI
    BundleLimits                    packed/unpacked bytes, entries, depth, name lengths

Archives come from hostile users: every refusal is a ``faas.errors.BundleRejected``
(HTTP 400) naming the problem and the entry; see docs/design.md, "Code bundles".
"""

from faas.bundles.limits import BundleInfo, BundleLimits
from faas.bundles.pack import pack_folder
from faas.bundles.store import BundleStore

__all__ = ["BundleInfo", "BundleLimits", "BundleStore", "pack_folder"]
