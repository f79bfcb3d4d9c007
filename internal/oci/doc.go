// Package oci runs aloft workloads as OCI containers on a local cloud.
//
// It has two building blocks that do not depend on the container runtime
// binary itself:
//
//   - Cache unpacks OCI images into flattened, read-only root filesystems,
//     one per image manifest digest, shared by every container of that image.
//     Unpacking is atomic and confined to the cache directory (os.Root), so a
//     malicious layer cannot write outside it.
//   - BuildSpec turns an image config plus the deployment's command, args,
//     env and resource limits into an OCI runtime-spec config (config.json)
//     with Docker-like defaults: read-only root, writable tmpfs /tmp, Docker's
//     default capabilities, no new privileges.
package oci
