"""Verification where images are pulled or admitted (issue 15, docs/containerd.md,
docs/kubernetes.md, docs/adr/0010-verification-at-pull-time.md).

One engine decides for both front ends, the containerd image verifier
(:mod:`opk_sign.containerd.verifier`) and the admission service (``opk-sign serve``):

- :mod:`.settings` (pure): the verifier's configuration file, read strictly;
- :mod:`.decision` (pure): a decision, its one-line reason and its audit record;
- :mod:`.cache` (pure, files only): the bounded cache of verified digests;
- :mod:`.external_data` (pure): the external-data provider request and response (Gatekeeper's
  shape, which Kyverno's ``apiCall`` posts too);
- :mod:`.engine` (I/O): trust data with a deadline and from the cache, the mapping's policy,
  the registry, the cache;
- :mod:`.server` (I/O): the HTTP service.
"""
