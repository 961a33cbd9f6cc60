# A static binary in a distroless image: no shell, no libc, no package manager; CA certificates
# (for HTTPS to Cloudinary and rediss://), /etc/passwd's nonroot user and tzdata only.
# Build: docker build -t cloudinary-upload-api .
# Run:   docker run -p 8080:8080 -e CLOUDINARY_URL=cloudinary://KEY:SECRET@CLOUD cloudinary-upload-api
# docs/deploy.md has each platform's steps. dockerbuild_test.go builds the binary with this file's
# `go build` line, and runs it as this image does (uid 65532, an empty root but the CA bundle).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/cloudinary-upload-api .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cloudinary-upload-api /usr/local/bin/cloudinary-upload-api
# The local store (STORAGE=local, or auto without credentials) writes under the working directory,
# which must belong to the user: nonroot's home. A container's disk is lost on restart: set
# STORAGE=cloudinary in production (each platform file does).
WORKDIR /home/nonroot
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No HEALTHCHECK: it would need a shell or a client in the image. Each platform checks GET /healthz
# itself (fly.toml's http check, render.yaml's healthCheckPath, a Cloud Run startup/liveness probe);
# under plain Docker or Compose, check it from outside: curl -f http://localhost:8080/healthz.
# SIGTERM (Docker's default stop signal) lets uploads in flight finish within SHUTDOWN_TIMEOUT.
ENTRYPOINT ["/usr/local/bin/cloudinary-upload-api"]
