# One image with both binaries: /manager (the controller) and /receiver (the data plane the
# manager runs in each CallbackReceiver's pods).
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY receiver/ receiver/
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/imcallback/callback-operator/internal/version.Version=${VERSION}" \
      -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/imcallback/callback-operator/internal/version.Version=${VERSION}" \
      -o /out/receiver ./cmd/receiver

# Static binaries on distroless: no shell, no package manager, runs as uid 65532.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /manager
COPY --from=build /out/receiver /receiver
USER 65532:65532
ENTRYPOINT ["/manager"]
