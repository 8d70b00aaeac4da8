# The opk-sign container action's image. Two stages: the package is built and installed into a
# virtualenv in the first, and only that virtualenv and the entry point reach the final image, so
# no build tools or caches are left in it.
#
# The base is python:3.12-slim pinned by the digest of its multi-platform index. When bumping,
# re-resolve it (`docker buildx imagetools inspect python:3.12-slim`) and update both lines.

FROM python:3.12-slim@sha256:2fe5997d249a808b8eeea52c58a1dbffbba28754dc11699ef5c029f2d818ce79 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/opk-sign \
 && /opt/opk-sign/bin/pip install --no-compile . \
 && /opt/opk-sign/bin/pip uninstall --yes pip

FROM python:3.12-slim@sha256:2fe5997d249a808b8eeea52c58a1dbffbba28754dc11699ef5c029f2d818ce79
ENV PATH=/opt/opk-sign/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/opk-sign /opt/opk-sign
COPY entrypoint.py /opt/opk-sign/entrypoint.py
# GitHub runs container actions as root (file commands and the workspace belong to the runner).
ENTRYPOINT ["/opt/opk-sign/bin/python", "/opt/opk-sign/entrypoint.py"]
