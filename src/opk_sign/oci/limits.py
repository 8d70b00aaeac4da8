"""Size and count limits of the registry layer; content over a limit is refused, not truncated."""

from __future__ import annotations

#: Largest manifest or index we read or write (the limit distribution and most registries enforce).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Largest signature or attestation bundle we read or attach: the bundle format's own limit
#: (docs/bundle.md), the one definition (``opk_sign.bundle`` uses it too).
MAX_BUNDLE_BYTES = 1 << 20
#: Blobs up to this size are uploaded with a single POST where the registry takes it.
SINGLE_POST_MAX_BYTES = 16 * 1024 * 1024
#: Blobs up to this size are copied through memory; larger ones through a temporary file.
COPY_IN_MEMORY_MAX_BYTES = 32 * 1024 * 1024
#: Descriptors in one index (platforms, attestation manifests): real ones list a dozen.
MAX_INDEX_MANIFESTS = 1024
#: Referrers of one manifest, over all pages: whoever can push referrers must not make us list
#: (and keep in memory) without end.
MAX_REFERRERS = 4096
#: Pages of a referrers API answer we follow before giving up.
MAX_REFERRERS_PAGES = 64
#: Depth of referrers-of-referrers walked by inspect and copy.
MAX_REFERRER_DEPTH = 8
#: Rounds of read, merge and write of a fallback referrers index before giving up.
MAX_FALLBACK_ROUNDS = 30
