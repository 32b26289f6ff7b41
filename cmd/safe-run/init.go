package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsexec: the C constructor that sets up namespaces for "init" before
	// the Go runtime starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	// Device rules for the cgroup manager; without it every container
	// with device rules fails to start.
	_ "github.com/opencontainers/cgroups/devices"

	"github.com/safe-run/safe-run/internal/rootless"
)

// libcontainer starts a container by re-executing this binary (a sealed
// copy of it) as "safe-run init" inside the new namespaces, before anything
// else: hence init() rather than a command.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
	// The rootless entry re-executes safe-run once the user namespace is
	// mapped (see internal/rootless); that too comes first.
	rootless.FinishEntry()
}
