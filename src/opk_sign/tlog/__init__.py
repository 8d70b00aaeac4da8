"""Transparency: logging bundles in a Rekor v2 log and verifying their entries offline
(docs/transparency.md, docs/adr/0009-transparency-log.md).

Pure: ``merkle`` (RFC 9162 proofs), ``note`` (C2SP signed notes and verifier keys),
``checkpoint`` (C2SP checkpoints, witness quorum, the trusted keys), ``hashedrekord`` (the logged
body), ``cert`` (the certificate carrying the PK token), ``entry`` (TransparencyLogEntry),
``verify`` (a bundle's entries), ``tiles`` (C2SP tlog-tiles). I/O: ``client`` (writing to the
log), ``reader`` (reading tiles), ``monitor`` (``opk-sign log monitor``).
"""
