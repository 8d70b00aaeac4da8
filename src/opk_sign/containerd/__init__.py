"""containerd's image verifier: ``opk-sign-containerd-verifier`` (:mod:`.verifier`) and its
installation (:mod:`.install`); docs/containerd.md."""
