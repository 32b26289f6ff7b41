package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// dockerProfile is a seccomp profile in Docker's JSON format, the one
// `docker run --security-opt seccomp=FILE` reads (moby/profiles/seccomp
// Seccomp). It is the OCI form plus conditions on capabilities, kernel
// version and architecture, resolved when the profile is loaded.
type dockerProfile struct {
	DefaultAction    specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet  *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures    []specs.Arch             `json:"architectures,omitempty"`
	ArchMap          []dockerArch             `json:"archMap,omitempty"`
	Flags            []specs.LinuxSeccompFlag `json:"flags,omitempty"`
	ListenerPath     string                   `json:"listenerPath,omitempty"`
	ListenerMetadata string                   `json:"listenerMetadata,omitempty"`
	Syscalls         []dockerSyscall          `json:"syscalls"`
}

// dockerArch is an archMap entry: the architectures a profile covers when
// it runs on Arch.
type dockerArch struct {
	Arch      specs.Arch   `json:"architecture"`
	SubArches []specs.Arch `json:"subArchitectures"`
}

type dockerSyscall struct {
	Names    []string                 `json:"names,omitempty"`
	Name     string                   `json:"name,omitempty"` // older profiles' spelling of a one-call rule
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []specs.LinuxSeccompArg  `json:"args,omitempty"`
	Comment  string                   `json:"comment,omitempty"`
	Includes *dockerFilter            `json:"includes,omitempty"`
	Excludes *dockerFilter            `json:"excludes,omitempty"`
}

// dockerFilter is a rule's condition. In includes all of it must hold; in
// excludes any of it is enough.
type dockerFilter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"` // "<major>.<minor>"
}

// WriteDockerJSON writes s in Docker's JSON profile format, for
// `docker run --security-opt seccomp=FILE` and for safe-run's own custom
// profiles. Conditions are already resolved in s, so the file holds none:
// it is for the capabilities and architecture s was built for. Merged
// value tests are written one value a rule (splitValueTests).
func WriteDockerJSON(w io.Writer, s *specs.LinuxSeccomp) error {
	if s == nil {
		return errors.New(`no seccomp profile to write: the service is unconfined (docker run takes --security-opt seccomp=unconfined)`)
	}
	p := dockerProfile{
		DefaultAction:    s.DefaultAction,
		DefaultErrnoRet:  s.DefaultErrnoRet,
		Architectures:    s.Architectures,
		Flags:            s.Flags,
		ListenerPath:     s.ListenerPath,
		ListenerMetadata: s.ListenerMetadata,
		Syscalls:         make([]dockerSyscall, 0, len(s.Syscalls)),
	}
	for _, sc := range splitValueTests(s.Syscalls) {
		p.Syscalls = append(p.Syscalls, dockerSyscall{
			Names:    sc.Names,
			Action:   sc.Action,
			ErrnoRet: sc.ErrnoRet,
			Args:     sc.Args,
		})
	}
	// Tabs, as in Docker's own default.json.
	b, err := json.MarshalIndent(p, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding seccomp profile: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
