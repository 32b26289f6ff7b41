// Package image is the third stage of safe-run: it turns the manifest's
// [image] source into a read-only root filesystem directory and the image's
// configuration (entrypoint, environment, user), which the launcher
// presents to the container. It never writes into a rootfs it is given.
package image
