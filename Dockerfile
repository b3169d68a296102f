# tilegate's container image: a static binary (CGO_ENABLED=0; SQLite is the pure-Go modernc
# driver) on distroless/static, run as the image's non-root user. Build and run:
#   docker build -t tilegate .
#   docker run -p 8080:8080 -v tilegate:/data -e TILEGATE_PUBLIC_URL=http://localhost:8080 tilegate
# The image listens on all interfaces (:8080), so TILEGATE_PUBLIC_URL is required (tilegate
# refuses to start without it). README, Deployment, says more.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# -buildvcs: the revision `tilegate version` reports (.git is part of the build context).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags='-s -w' -o /out/tilegate ./cmd/tilegate \
 && /out/tilegate version \
 && mkdir -p /out/data/tiles

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tilegate /usr/local/bin/tilegate
# /data holds the SQLite database and the MBTiles files unless DATABASE_URL points elsewhere;
# owned by the image's non-root user (65532) so a new volume starts writable.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
ENV TILEGATE_ADDR=:8080 \
    DATABASE_URL=sqlite:/data/tilegate.db \
    TILEGATE_DATA_DIR=/data/tiles
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]
# No curl in a distroless image: the binary asks its own /readyz (database and storage).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/tilegate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tilegate"]
CMD ["serve"]
