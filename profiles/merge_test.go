package profiles

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestCover checks that the cubes cover exactly the values, for the
// address families of the default profile and for random sets.
func TestCover(t *testing.T) {
	families := []uint64{0, 1, 2, 7, 8, 9, 10, 13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45}
	if got := cover(families); len(got) != 12 {
		t.Errorf("the default profile's 32 address families need %d cubes, want 12", len(got))
	}
	sets := [][]uint64{families, {0, 8, 0x20000, 0x20008, 0xffffffff}, {5}, {1, 2, 10}}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var s []uint64
		for v := range uint64(64) {
			if r.IntN(3) == 0 {
				s = append(s, v)
			}
		}
		if len(s) > 0 {
			sets = append(sets, s)
		}
	}
	for _, s := range sets {
		var union []uint64
		for _, c := range cover(s) {
			union = append(union, c.members()...)
		}
		slices.Sort(union)
		union = slices.Compact(union)
		if want := slices.Compact(slices.Sorted(slices.Values(s))); !slices.Equal(union, want) {
			t.Fatalf("cover(%v) covers %v", s, union)
		}
	}
}

func TestMergeValueTests(t *testing.T) {
	rules := []specs.LinuxSyscall{
		{Names: []string{"read"}, Action: specs.ActAllow},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argLt(0, 3)}},
		{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argMasked(0, cloneNamespaces, 0)}},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 3)}},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 9)}},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 16), argEq(2, 0)}},
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 8)}},
	}
	want := []specs.LinuxSyscall{
		{Names: []string{"read"}, Action: specs.ActAllow},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argMasked(0, ^uint64(3), 0)}}, // 0-3
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argMasked(0, ^uint64(8), 1)}}, // 1 and 9
		{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argMasked(0, cloneNamespaces, 0)}},
		{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 16), argEq(2, 0)}}, // two tests: kept
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(0, 8)}},          // alone: kept
	}
	got := mergeValueTests(rules)
	if d := Diff(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: rules}, &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: got}); len(d) > 0 {
		t.Errorf("merging changed decisions: %v", d)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !slices.Equal(got[i].Names, want[i].Names) || !slices.Equal(got[i].Args, want[i].Args) {
			t.Errorf("rule %d: got %v %+v, want %v %+v", i, got[i].Names, got[i].Args, want[i].Names, want[i].Args)
		}
	}
}
