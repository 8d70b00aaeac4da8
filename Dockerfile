# The opk-sign container action's image (action.yml, verify/action.yml). Released images are
# built by scripts/release.sh, pushed to ghcr.io, signed by opk-sign itself through the reusable
# signing workflow and pinned by digest in the release commit's action.yml (docs/release.md).
#
# Two stages: the locked dependencies (requirements/runtime.txt, every file checked against its
# hash) and the opk-sign wheel are installed into a virtualenv in the first; only that virtualenv
# and the entry point reach the final image: no pip, no setuptools, no build tools, no caches.
#
# BASE_IMAGE: python:3.12-slim pinned by the digest of its multi-platform index (amd64, arm64).
# When bumping, re-resolve it (`crane digest python:3.12-slim`) and update this line only. The
# tests build from a Debian base they make themselves (tests/services/container_build.py).
ARG BASE_IMAGE=python:3.12-slim@sha256:2fe5997d249a808b8eeea52c58a1dbffbba28754dc11699ef5c029f2d818ce79

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
WORKDIR /src
# The dependencies first, so that a change to the source reuses this layer.
COPY requirements/build.txt requirements/runtime.txt ./requirements/
# /opt/build: pip and the build backend (hash-locked too). /opt/opk-sign: the runtime, made
# without pip and filled by the build venv's pip (--python), so it holds exactly the lock.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary=:all: \
      -r requirements/build.txt \
 && python3 -m venv --without-pip /opt/opk-sign \
 && /opt/build/bin/pip --python /opt/opk-sign/bin/python install \
      --require-hashes --no-deps --only-binary=:all: -r requirements/runtime.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The wheel is built offline with the locked backend and installed without dependencies: the
# lock above is all there is.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /tmp/dist . \
 && /opt/build/bin/pip --python /opt/opk-sign/bin/python install --no-deps --no-index \
      /tmp/dist/opk_sign-*.whl

FROM ${BASE_IMAGE}
# No .pyc is written at run time: the image's own are compiled at install, and the container's
# file system is not one of the runner's paths.
ENV PATH=/opt/opk-sign/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/opk-sign /opt/opk-sign
COPY entrypoint.py /opt/opk-sign/entrypoint.py
# The labels last, so that a build of another version or commit reuses the layers above.
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=https://github.com/opk-sign/opk-sign
LABEL org.opencontainers.image.title="opk-sign" \
      org.opencontainers.image.description="Keyless signing and verification of container images with OpenPubkey (GitHub Actions)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# No USER: GitHub runs container actions as root, with the workspace, $HOME (/github/home) and
# the file commands (/github/file_commands) bind-mounted from the runner and owned by its user;
# another user could not write the outputs, the step summary or the offline kit. The entry point
# writes only there (and to the registry).
ENTRYPOINT ["/opt/opk-sign/bin/python", "/opt/opk-sign/entrypoint.py"]
