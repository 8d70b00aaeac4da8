"""One writer of test_concurrent_referrers, in its own process.

Arguments: the image reference and the subject descriptor (JSON). Prints ``ready``, waits for a
line on stdin (so all writers start together), attaches one referrer to the subject, and prints
the stored descriptor's digest as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from opk_sign.http import HTTPConfig
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.keychain import Keychain

ARTIFACT_TYPE = "application/vnd.dev.opk-sign.test.signature.v1+json"
BUNDLE_TYPE = "application/vnd.dev.opk-sign.test.bundle.v1+json"


def main(argv: list[str]) -> int:
    ref, subject_json, writer = argv
    subject = Descriptor.from_dict(json.loads(subject_json))
    http = HTTPConfig(connect_timeout=5, read_timeout=30, backoff_factor=0.05, backoff_max=1)
    with RegistryClient(Keychain.anonymous(), http) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.monotonic()
        stored = client.attach_artifact(
            ref,
            subject,
            ARTIFACT_TYPE,
            f"writer {writer} {uuid.uuid4()}".encode(),
            BUNDLE_TYPE,
            {"writer": writer},
        )
    print(json.dumps({"digest": stored.digest, "seconds": time.monotonic() - start}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
