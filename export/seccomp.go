package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// writeSeccomp writes s in Docker's JSON profile format.
// TODO(profiles): once package profiles is merged, this body becomes
// `return profiles.WriteDockerJSON(w, s)` and dockerProfile below goes.
func writeSeccomp(w io.Writer, s *specs.LinuxSeccomp) error { return writeDockerJSON(w, s) }

// dockerProfile is the subset of Docker's seccomp profile format
// (moby/profiles/seccomp) that an OCI LinuxSeccomp maps onto: the same
// keys, without Docker's conditional rules, so containerd and CRI-O read
// the same file as a Localhost profile.
type dockerProfile struct {
	DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures   []specs.Arch             `json:"architectures,omitempty"`
	Flags           []specs.LinuxSeccompFlag `json:"flags,omitempty"`
	Syscalls        []dockerSyscall          `json:"syscalls"`
}

type dockerSyscall struct {
	Names    []string                 `json:"names"`
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []specs.LinuxSeccompArg  `json:"args,omitempty"`
}

func writeDockerJSON(w io.Writer, s *specs.LinuxSeccomp) error {
	if s == nil {
		return errors.New("no seccomp profile to write: the service is unconfined (docker run takes --security-opt seccomp=unconfined)")
	}
	p := dockerProfile{
		DefaultAction:   s.DefaultAction,
		DefaultErrnoRet: s.DefaultErrnoRet,
		Architectures:   s.Architectures,
		Flags:           s.Flags,
		Syscalls:        make([]dockerSyscall, 0, len(s.Syscalls)),
	}
	for _, sc := range s.Syscalls {
		p.Syscalls = append(p.Syscalls, dockerSyscall{Names: sc.Names, Action: sc.Action, ErrnoRet: sc.ErrnoRet, Args: sc.Args})
	}
	b, err := json.MarshalIndent(p, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding seccomp profile: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
