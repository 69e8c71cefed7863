# ember server image: emberd (gRPC) and the ember CLI on Debian bookworm.
# How to build, run, mount models and check health, and how this was verified: deploy/docker.md.
#
#   docker build -t ember .            (or: buildah bud --format docker -t ember .)
#   docker run -p 50051:50051 -v "$PWD/models:/models:ro" ember
#
# Models: /models/<name>/<version>.safetensors, mounted read-only; emberd watches the directory
# and loads new versions without a restart.

# ---- build stage: compile emberd and ember with the build dependencies only ------------------
FROM debian:bookworm-slim AS build
WORKDIR /src
# Dependencies first, so editing the sources does not reinstall them.
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# Portable binaries: no -march=native (EMBER_NATIVE stays OFF), no test suite.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DEMBER_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target emberd ember_cli \
 && cmake --install /build --prefix /opt/ember --strip

# ---- runtime stage: the shared libraries, the two binaries, a non-root user ------------------
FROM debian:bookworm-slim
COPY deploy/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/install-deps.sh \
 && useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ember \
 && mkdir /models && chown ember:ember /models
COPY --from=build /opt/ember/bin/emberd /opt/ember/bin/ember /usr/local/bin/
# Every shared library the binaries link (libpng for `ember plot` too) must come from
# install-deps.sh --runtime: a missing one fails the build here, not the first run.
RUN ! ldd /usr/local/bin/emberd /usr/local/bin/ember | grep "not found"
USER 10001:10001
VOLUME /models
EXPOSE 50051
# grpc.health.v1.Health/Check on the server's own port; exits 0 only when it answers SERVING.
# If you change --listen's port, change it here too; with TLS on, the check needs --tls-ca
# (docker run --health-cmd, deploy/docker.md "TLS, tokens and the health check").
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["ember", "--server", "127.0.0.1:50051", "health"]
# emberd drains on SIGTERM (health NOT_SERVING, in-flight calls answered) before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["emberd"]
CMD ["--models", "/models", "--listen", "0.0.0.0:50051"]
