# The sandbox image in which untrusted submissions run (see DESIGN.md section 3).
#
# Built offline: every input is in the build context that grader/sandbox/image.py
# assembles (this file, NumPy wheels downloaded on the host, the worker files).
# Build it with `python3 -m grader.sandbox.image`; do not `docker build .` the
# repository itself (the context would be the whole repo, hidden tests included).
#
# BASE_IMAGE is python:3.11-slim when that is present or pullable, else a
# Debian bookworm base made locally with debootstrap + `docker import`.
# Holds: Python 3.11, NumPy, the worker. No torch, no compilers, no tests.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS lib
ARG NUMPY_VERSION
COPY wheels/ /tmp/wheels/
# --target: a plain directory on PYTHONPATH, the same on both bases (it also
# sidesteps Debian's "externally managed" guard). pip compiles the .pyc files
# now, since the root file system is read-only at run time.
RUN python3 -m pip install --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels --target /opt/grader/lib "numpy==${NUMPY_VERSION}"

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 sandbox \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin sandbox
COPY --from=lib /opt/grader/lib/ /opt/grader/lib/
COPY worker/ /opt/grader/
RUN python3 -m compileall -q /opt/grader/grader

ENV PYTHONPATH=/opt/grader:/opt/grader/lib \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LANG=C.UTF-8 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1
# /tmp is the scratch dir: the backend mounts a tmpfs there (root fs is read-only).
WORKDIR /tmp
USER sandbox
CMD ["python3"]
