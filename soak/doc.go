// Package soak proves safe-run under load and faults (issue 19), through
// the real binaries as an operator runs them: thousands of start-to-exit
// cycles root and rootless, with and without a bridge and a published
// port; safe-run SIGKILLed at random moments; many services started at
// once; hogs beside a service that must keep answering; damaged caches,
// journals and cgroups; a simulated power loss. After each, it looks for
// anything left behind: cgroups, mounts, network namespaces, links,
// nftables tables, leases, state, lock and temporary files, processes.
//
// It is all tests (soak_linux_test.go and beside it); this file only
// documents the package. `make test` runs a short pass of the same code
// (a minute); `make soak` runs the long one (SAFE_RUN_SOAK=long, about 10
// minutes on 2 cores), and SAFE_RUN_SOAK=medium a quarter of it. The
// long pass prints its figures (cycles, percentiles, leaks) as the
// README's reliability table; only it checks timing (start p99 against
// p50): a test run on a shared machine asserts no time.
//
// SAFE_RUN_BIN names a directory with safe-run and the binaries it ships
// (make soak passes bin/); without it the tests build their own.
package soak
