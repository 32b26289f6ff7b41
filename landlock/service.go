package landlock

import (
	"fmt"
	"strings"
)

// ForService decides the Landlock confinement of in.Service on a kernel
// at in.ABI (0: no Landlock). It returns nil when none applies, with a
// note for the start report saying why; an error wrapping ErrNotInKernel
// when the manifest requires Landlock and the kernel has none.
func ForService(in Input) (r *Ruleset, note string, err error) {
	svc := in.Service
	switch {
	case svc.Security.Landlock == "off":
		return nil, "Landlock OFF ([insecure] landlock_off)", nil
	case in.ABI < 1:
		if svc.Security.LandlockRequired {
			return nil, "", fmt.Errorf("%w: %w", ErrNotInKernel, svc.Errorf("security.landlock_required",
				"this kernel has no Landlock (run on Linux 5.13 or later with landlock in its lsm= list, or set landlock_required = false)"))
		}
		return nil, "Landlock not enforced: Landlock not in this kernel", nil
	case !svc.Security.NoNewPrivileges:
		// landlock_restrict_self needs no_new_privs, or CAP_SYS_ADMIN,
		// which the service never has (security/landlock/syscalls.c).
		return nil, "Landlock not enforced: no_new_privileges = false (Landlock needs no_new_privs)", nil
	}
	r, err = Generate(in)
	if err != nil {
		return nil, "", err
	}
	if r.ABI < 4 {
		note = fmt.Sprintf("Landlock ABI %d: file system only (TCP rules need ABI 4, scoping ABI 6)", r.ABI)
	} else if r.ABI < 6 {
		note = fmt.Sprintf("Landlock ABI %d: file system and TCP, no scoping of abstract sockets and signals (ABI 6)", r.ABI)
	}
	return r, note, nil
}

// Summary says in a few words what r enforces, for the start report.
func (r *Ruleset) Summary() string {
	parts := []string{"file system"}
	if r.HandledNet != 0 {
		var ports []string
		for _, p := range r.Ports {
			if p.Access&NetBindTCP != 0 {
				ports = append(ports, fmt.Sprint(p.Port))
			}
		}
		bind := "no TCP bind"
		if len(ports) > 0 {
			bind = "TCP bind " + strings.Join(ports, " ")
		}
		connect := "TCP connect any"
		if r.HandledNet&NetConnectTCP != 0 {
			connect = "TCP connect restricted"
		}
		parts = append(parts, bind, connect)
	}
	if r.Scoped != 0 {
		parts = append(parts, "scoped signals and abstract sockets")
	}
	return fmt.Sprintf("Landlock ABI %d (%s)", r.ABI, strings.Join(parts, ", "))
}
