# safe-run: `make run` and `make test` set everything up on a fresh Debian
# machine, as root, with nothing preinstalled but Go.

GO        ?= go
CC        ?= gcc
# safe-run-init and safe-run-janitor start with every service: static
# against musl they are 50-80 KB and start about 1 ms sooner than against
# glibc (770 KB).
HELPER_CC ?= musl-gcc
BIN       := bin
TAGS      := seccomp
# safe-run is linked statically, as runc's releases are: it starts twice
# per container (itself, then as the container's init), and the dynamic
# loader cost about 1.6 ms of each start. Static, its user lookups and name
# resolution are Go's own (osusergo, netgo).
STATIC_TAGS := $(TAGS) netgo osusergo
# cgo is required: libcontainer's nsenter is C, and seccomp uses libseccomp.
export CGO_ENABLED := 1

# Debian packages each target needs, installed only when missing.
BUILD_PKGS := gcc libc6-dev musl-tools libseccomp-dev pkg-config busybox-static uidmap
TEST_PKGS  := $(BUILD_PKGS) mmdebstrap qemu-system-x86 xz-utils zstd apparmor systemd skopeo umoci docker.io passt curl
IMAGES_PKGS := mmdebstrap
BENCH_PKGS := $(BUILD_PKGS) runc crun bubblewrap docker.io hyperfine umoci

# The id ranges services' user namespaces come from (see launcher.IDUser).
SUBIDS := 1073741824-1140850687

.PHONY: build run test check bench example images deps-build deps-test deps-bench deps-images setup-user fuzz fuzz-long soak clean

# -trimpath: the binaries hold no path of this checkout (the build host's
# layout is none of a container's business), and are the same wherever it
# is.
build: deps-build
	$(GO) build -trimpath -tags '$(STATIC_TAGS)' -ldflags '-extldflags -static' -o $(BIN)/safe-run ./cmd/safe-run
	$(GO) build -trimpath -tags '$(TAGS)' -o $(BIN)/safe-run-tools ./cmd/safe-run-tools
	$(HELPER_CC) -static -Os -Wall -Wextra -o $(BIN)/safe-run-init cmd/safe-run-init/safe-run-init.c
	$(HELPER_CC) -static -Os -Wall -Wextra -o $(BIN)/safe-run-janitor cmd/safe-run-janitor/safe-run-janitor.c

example: build
	CGO_ENABLED=0 $(GO) build -ldflags '-s -w' -o $(BIN)/confinement ./example/confinement
	./example/mkrootfs.sh example/rootfs $(BIN)/confinement
	$(GO) run ./example/mkoci -entrypoint /bin/confinement -user 1000:1000 -env LOG_LEVEL=info \
		-label org.opencontainers.image.source=https://example.org/safe-run-example example/rootfs example/oci:latest

# The Debian services under example/ (nginx, redis): their root
# filesystems from Debian 12 packages, built once by mmdebstrap into
# /var/cache/safe-run/rootfs and linked beside each manifest as rootfs.
# The packages here must match those of the tests (see example/services_test.go).
images: deps-images
	p=$$(./example/debian/mkrootfs.sh nginx nginx busybox) && ln -sfn "$$p" example/nginx/rootfs
	p=$$(./example/debian/mkrootfs.sh redis redis-server) && ln -sfn "$$p" example/redis/rootfs

run: build example setup-user
	$(BIN)/safe-run example/service.toml

test: check build deps-test setup-user
	SAFE_RUN_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -timeout 25m ./...
	$(MAKE) fuzz

# The linter, at a pinned version, built by the Go toolchain from the Go
# proxy (checksummed by sum.golang.org like any module): no binary to
# install, the same on every machine.
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
# Packages whose tests need no root, no kernel feature and no daemon:
# under the race detector in seconds.
RACE_PKGS := ./manifest ./policy ./landlock ./importer ./image/registry ./ops

# The style guide's mechanical promises, fast, before the long tests:
# go.mod is tidy, vet and the linter (.golangci.yml says what and why)
# pass, manifest and policy build on any OS, and the pure packages' tests
# pass under the race detector (their depcheck tests keep them pure).
check: deps-build
	@t0=$$(date +%s); $(GO) mod tidy -diff && echo "check: go mod tidy -diff: $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$bad" ]; then echo "gofmt -l: $$bad (run gofmt -w)"; exit 1; fi; echo "check: gofmt: $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); $(GO) vet -tags '$(TAGS)' ./... && echo "check: go vet: $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); for os in darwin windows; do CGO_ENABLED=0 GOOS=$$os $(GO) build ./manifest ./policy || exit 1; done; \
		echo "check: manifest and policy build for darwin, windows: $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); $(GO) run $(GOLANGCI_LINT) run ./... && echo "check: golangci-lint: $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); $(GO) test -race -tags '$(TAGS)' -count=1 $(RACE_PKGS) && echo "check: go test -race: $$(( $$(date +%s) - t0 ))s"

# Every native fuzz target, as package:Target. make fuzz (run by make
# test and CI) gives each 20s: about 3 minutes on 2 cores with the builds;
# make fuzz-long gives each 10 minutes (FUZZTIME=20s on its command line,
# or FUZZ_TARGETS=image:FuzzUnpack, to try it shorter or on one target).
# Each target prints its executions at the end. A crasher is written under
# the package's testdata/fuzz/Target/: keep it there as a regression case
# (plain go test runs it) and fix what it shows. One target by hand:
#   go test ./image -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime 10m
FUZZ_TARGETS := manifest:FuzzParse manifest:FuzzParsePort manifest:FuzzParseEgressRule \
	profiles:FuzzCustom importer:FuzzDockerRun importer:FuzzCompose image:FuzzUnpack
FUZZTIME ?= 20s
# Go minimizes every input that finds new coverage for up to 60s by
# default, fuzzing nothing meanwhile: 5s gave FuzzCustom twice the new
# inputs in a quarter of the time. Crashers are minimized as long.
FUZZMINIMIZE ?= 5s

# Go's fuzzing coordinator sometimes fails a run that found nothing, with a
# bare "context deadline exceeded" and no input written, when a worker on a
# busy machine is mid-call as -fuzztime ends (golang/go#75804; seen in CI
# once, FuzzUnpack at 0 execs/s in its last second): such a run is taken
# once more. Anything else, a failing input above all, fails at once.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		for try in 1 2; do \
			echo "fuzz: $$fn in ./$$pkg for $(FUZZTIME)"; log=$$(mktemp); \
			if $(GO) test -tags '$(TAGS)' ./$$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) >$$log 2>&1; then \
				echo "fuzz: $$fn: $$(grep -o 'execs: [0-9]*' $$log | tail -1 | cut -d' ' -f2) execs, 0 crashes"; rm -f $$log; break; \
			fi; \
			if [ $$try = 1 ] && grep -qx '    context deadline exceeded' $$log && ! grep -q 'Failing input written to' $$log; then \
				echo "fuzz: $$fn: the fuzzing engine missed its own deadline, no input failed (golang/go#75804): once more"; rm -f $$log; continue; \
			fi; \
			cat $$log; if grep -q 'Failing input written to' $$log; then echo "fuzz: $$fn: CRASHED (the input is under ./$$pkg/testdata/fuzz/$$fn/)"; else echo "fuzz: $$fn: FAILED (above)"; fi; rm -f $$log; exit 1; \
		done; \
	done

# FUZZTIME given on the command line wins (make fuzz-long FUZZTIME=20s).
fuzz-long:
	$(MAKE) fuzz FUZZTIME=$(if $(filter command line,$(origin FUZZTIME)),$(FUZZTIME),10m)

# The soak (issue 19, soak/): thousands of start-to-exit cycles root and
# rootless, with and without a bridge; SIGKILLs at random moments; 50
# services at once; hogs beside a web service; the supervisor under
# 10,000 operations calls; then a search for anything left behind. About
# 10 minutes on 2 quiet cores, through bin/. make test runs a short pass
# of the same tests (about a minute); SOAK=medium is a quarter of the long
# one. The figures table is printed at the end, and kept in SOAK_REPORT.
SOAK        ?= long
SOAK_REPORT ?= soak-report.md
soak: build setup-user
	SAFE_RUN_SOAK=$(SOAK) SAFE_RUN_BIN=$(CURDIR)/$(BIN) SAFE_RUN_SOAK_REPORT=$(abspath $(SOAK_REPORT)) \
		$(GO) test -tags '$(TAGS)' -count=1 -timeout 90m -v ./soak

bench: build example deps-bench setup-user bin/runc-libcontainer
	$(GO) run -tags '$(TAGS)' ./bench

# The runc CLI of the very runc module safe-run links: the bench's
# comparison of like with like, beside the distribution's older runc.
bin/runc-libcontainer: go.mod
	dir=$$($(GO) list -m -f '{{.Dir}}' github.com/opencontainers/runc) && \
	cd "$$dir" && GOFLAGS=-mod=mod $(GO) build -trimpath -tags seccomp -o $(CURDIR)/$@ .

# The system user whose subordinate id ranges the services' user namespaces
# come from. Done once; the README shows it as an install step.
setup-user:
	@id safe-run >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin safe-run
	@grep -q '^safe-run:' /etc/subuid 2>/dev/null || usermod --add-subuids $(SUBIDS) safe-run
	@grep -q '^safe-run:' /etc/subgid 2>/dev/null || usermod --add-subgids $(SUBIDS) safe-run

deps-build deps-test deps-bench deps-images: deps-%:
	@pkgs="$($(shell echo $* | tr a-z A-Z)_PKGS)"; \
	missing=$$(for p in $$pkgs; do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(BIN) example/rootfs example/oci example/nginx/rootfs example/redis/rootfs
