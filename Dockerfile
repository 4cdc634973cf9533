# pg-batch-exporter as a static binary on distroless (no shell, no libc, runs as nonroot).
#   make docker   (builds where a Docker engine answers; says so and skips where none does)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG LDFLAGS=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "${LDFLAGS}" -o /pg-batch-exporter ./cmd/pg-batch-exporter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pg-batch-exporter /pg-batch-exporter
EXPOSE 9188
USER nonroot:nonroot
ENTRYPOINT ["/pg-batch-exporter"]
