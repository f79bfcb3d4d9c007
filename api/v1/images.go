package v1

import "time"

// ImageInfo describes one image in the server's local image store (GET
// /api/v1/images). Images are shared by every workspace.
type ImageInfo struct {
	// Name is the normalised name:tag, e.g. "hello-world:latest" or
	// "ghcr.io/org/app:v1"; empty for an untagged image.
	Name string `json:"name"`
	// Digest is the sha256 digest of the image manifest ("sha256:...").
	Digest string `json:"digest"`
	// Size is manifest + config + compressed layers, in bytes.
	Size int64 `json:"size"`
	// Created is the creation time from the image config, if it has one.
	Created time.Time `json:"created,omitzero"`
	// Platform is os/architecture[/variant], e.g. "linux/amd64".
	Platform string `json:"platform"`
}
