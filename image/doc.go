// Package image is the third stage of safe-run: it turns the manifest's
// [image] source into a read-only root filesystem directory and the image's
// configuration (entrypoint, environment, user), which the launcher
// presents to the container. It never writes into a rootfs it is given.
//
// Images (an OCI layout, a docker or OCI archive, a registry reference
// pinned by digest) are unpacked once into a content-addressed cache shared
// by every service, keyed by the digest of the image's config, which names
// the uncompressed digest of every layer. Every blob is checked against its
// digest, and every layer is applied by Unpack, which never writes outside
// the tree it builds.
//
// The cache directory holds:
//
//	entries/ID[.setuid]/rootfs      an unpacked image, stored unshifted (the launcher id-maps it)
//	entries/ID[.setuid]/image.json  its config and what unpacking dropped
//	refs/HASH.json                  a source (a digest, an archive as stat'ed) -> entry
//	tmp/                            pulls in progress, each locked; what a killed pull left is removed by the next
//	locks/HASH.lock                 one pull of a source at a time, removed when it is done
//
// An entry appears by rename(2) only once it is complete and synced. A
// process using an entry holds a shared flock on its directory until it
// exits, so Remove and Prune never take an image from under a running
// service.
package image
