# Sluice host image: one static binary (CGO_ENABLED=0) on an empty base, with the
# first-party plugins and their lock. docs/deploy.md explains how to run several.
#
# The plugins are built outside the image (`make plugins`: Go for wasip1 and rustc for
# wasm32-wasi); the build context must hold bin/plugins/*.wasm.
#
#   make plugins && docker build -t sluice .
#   docker run -p 8080:8080 -e SLUICE_DATABASE_URL=postgres://... -e SLUICE_SECRET_KEY=... sluice
#
# Untested here: the workplace has the docker client but no daemon or base images. The
# same static binary was checked to start in an empty root (docs/deploy.md).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice
# scratch has no directories: the data dir owned by the user the host runs as (a named
# volume mounted there starts with this owner), and a /tmp for Snowflake's staged files.
RUN mkdir -p /out/data /out/tmp && chown 65532:65532 /out/data && chmod 1777 /out/tmp

FROM scratch
# CA roots for S3, BigQuery and Snowflake over HTTPS; time zones are embedded in the binary.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sluice /usr/bin/sluice
COPY bin/plugins/ /usr/share/sluice/plugins/
COPY plugins.lock plugins.lock.sig /usr/share/sluice/
COPY --from=build --chown=65532:65532 /out/data /var/lib/sluice
COPY --from=build /out/tmp /tmp
ENV SLUICE_HTTP_ADDR=0.0.0.0:8080 \
    SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_PLUGINS_DIR=/usr/share/sluice/plugins \
    SLUICE_PLUGINS_LOCK=/usr/share/sluice/plugins.lock \
    TMPDIR=/tmp \
    AWS_EC2_METADATA_DISABLED=true
# The data dir holds this host's plugin cache and compiled-code cache (and, without
# SLUICE_DATABASE_URL, the SQLite database). The image's directory is owned by uid 65532,
# so a named volume mounted there is writable; a bind mount must be chowned to 65532.
VOLUME /var/lib/sluice
USER 65532:65532
EXPOSE 8080
# SIGTERM drains: readiness turns 503, runs get SLUICE_SHUTDOWN_GRACE (default 1m) to
# finish, the others are handed back. Give the container more than that to stop
# (docker stop -t 90, Kubernetes terminationGracePeriodSeconds: 90).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/sluice", "serve"]
