package profiles

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Merging value tests: Docker's profile allows socket(2) for 30 address
// families, one rule each, and personality(2) for 5 personas. libseccomp
// turns each rule into its own comparisons for every architecture of the
// filter, and the time it takes to generate the program grows faster than
// its length: the 30 socket rules were a quarter of runc init's time in
// seccomp for the default profile (BenchmarkInitSeccomp). The same values
// fit in a dozen SCMP_CMP_MASKED_EQ tests, each of which holds for a set
// of values that differ only in the bits the mask leaves out: the filter
// allows exactly the same calls with fewer comparisons.

// valueSet is the values one argument test holds for, when they are few
// enough to list: SCMP_CMP_EQ, SCMP_CMP_LT of a small bound, and
// SCMP_CMP_MASKED_EQ leaving out a few bits. ok is false otherwise.
func valueSet(a specs.LinuxSeccompArg) (values []uint64, ok bool) {
	switch a.Op {
	case specs.OpEqualTo:
		return []uint64{a.Value}, true
	case specs.OpLessThan:
		if a.Value > 4096 {
			return nil, false
		}
		for v := range a.Value {
			values = append(values, v)
		}
		return values, true
	case specs.OpMaskedEqual:
		free := ^a.Value
		if bits.OnesCount64(free) > 12 || a.ValueTwo&free != 0 {
			return nil, false
		}
		return cube{free: free, value: a.ValueTwo}.members(), true
	}
	return nil, false
}

// cube is a set of values that agree on every bit but those in free.
type cube struct{ free, value uint64 }

func (c cube) members() []uint64 {
	out := []uint64{c.value}
	for f := c.free; f != 0; f &= f - 1 {
		bit := f & -f
		for _, v := range out {
			out = append(out, v|bit)
		}
	}
	slices.Sort(out)
	return out
}

func (c cube) contains(v uint64) bool { return v&^c.free == c.value }

// test is the argument test that holds for exactly c's members.
func (c cube) test(index uint) specs.LinuxSeccompArg {
	if c.free == 0 {
		return argEq(index, c.value)
	}
	return argMasked(index, ^c.free, c.value)
}

// cover returns the fewest cubes whose union is exactly values, in a
// fixed order: the prime cubes of values (Quine-McCluskey), then the
// smallest set of them that covers every value.
func cover(values []uint64) []cube {
	values = slices.Compact(slices.Sorted(slices.Values(values)))
	level := make([]cube, len(values))
	for i, v := range values {
		level[i] = cube{value: v}
	}
	var primes []cube
	for len(level) > 0 {
		merged := map[cube]bool{}
		var next []cube
		for i, a := range level {
			for _, b := range level[i+1:] {
				d := a.value ^ b.value
				if a.free == b.free && bits.OnesCount64(d) == 1 {
					next = append(next, cube{free: a.free | d, value: a.value &^ d})
					merged[a], merged[b] = true, true
				}
			}
		}
		for _, a := range level {
			if !merged[a] {
				primes = append(primes, a)
			}
		}
		slices.SortFunc(next, compareCubes)
		level = slices.Compact(next)
	}
	// The largest cubes first, so that the search finds a small cover
	// early and prunes the rest.
	slices.SortStableFunc(primes, func(a, b cube) int {
		return cmp.Compare(bits.OnesCount64(b.free), bits.OnesCount64(a.free))
	})
	// Which values each prime holds, as bit sets over values' indices:
	// the search below runs on every start, and cloning the values left
	// at each step cost a few milliseconds for the socket families.
	words := (len(values) + 63) / 64
	holds := make([][]uint64, len(primes))
	for i, c := range primes {
		holds[i] = make([]uint64, words)
		for j, v := range values {
			if c.contains(v) {
				holds[i][j/64] |= 1 << (j % 64)
			}
		}
	}
	var best, chosen []int
	var search func(left []uint64)
	search = func(left []uint64) {
		first := firstSet(left)
		if first < 0 {
			best = slices.Clone(chosen)
			return
		}
		// At least one more cube is needed: no better than best.
		if best != nil && len(chosen)+1 >= len(best) {
			return
		}
		rest := make([]uint64, words)
		for i, h := range holds {
			if h[first/64]&(1<<(first%64)) == 0 {
				continue
			}
			for w := range rest {
				rest[w] = left[w] &^ h[w]
			}
			chosen = append(chosen, i)
			search(rest)
			chosen = chosen[:len(chosen)-1]
		}
	}
	all := make([]uint64, words)
	for j := range values {
		all[j/64] |= 1 << (j % 64)
	}
	search(all)
	cubes := make([]cube, len(best))
	for i, p := range best {
		cubes[i] = primes[p]
	}
	slices.SortFunc(cubes, compareCubes)
	return cubes
}

// firstSet is the index of the lowest bit set in s, or -1.
func firstSet(s []uint64) int {
	for w, x := range s {
		if x != 0 {
			return w*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

func compareCubes(a, b cube) int {
	return cmp.Or(cmp.Compare(a.value, b.value), cmp.Compare(a.free, b.free))
}

// mergeValueTests replaces the rules that allow one call for single
// values of one argument (each rule testing only that argument) with the
// fewest SCMP_CMP_MASKED_EQ rules that allow the same values, in the
// place of the first of them. Rules with other actions, or more tests,
// are left as they are.
func mergeValueTests(rules []specs.LinuxSyscall) []specs.LinuxSyscall {
	type key struct {
		name  string
		index uint
	}
	values := map[key][]uint64{}
	count := map[key]int{}
	mergeable := func(sc specs.LinuxSyscall) (key, []uint64, bool) {
		if sc.Action != specs.ActAllow || len(sc.Names) != 1 || len(sc.Args) != 1 {
			return key{}, nil, false
		}
		if op := sc.Args[0].Op; op != specs.OpEqualTo && op != specs.OpLessThan {
			return key{}, nil, false
		}
		vs, ok := valueSet(sc.Args[0])
		return key{sc.Names[0], sc.Args[0].Index}, vs, ok
	}
	for _, sc := range rules {
		if k, vs, ok := mergeable(sc); ok {
			values[k] = append(values[k], vs...)
			count[k]++
		}
	}
	var out []specs.LinuxSyscall
	done := map[key]bool{}
	for _, sc := range rules {
		k, _, ok := mergeable(sc)
		switch {
		case !ok || count[k] < 2:
			out = append(out, sc)
		case !done[k]:
			done[k] = true
			for _, c := range cover(values[k]) {
				out = append(out, specs.LinuxSyscall{Names: []string{k.name}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{c.test(k.index)}})
			}
		}
	}
	return out
}

// splitValueTests undoes mergeValueTests for a profile written out: the
// rules that allow a call for a few values of one argument become one
// SCMP_CMP_EQ rule per value, in order, in the place of the first of
// them, as in Docker's own profile. A person reads "value": 10 more easily
// than a 64-bit mask, and tools that parse JSON numbers as doubles (jq
// 1.6, JavaScript) would round the mask. Loading the profile merges them
// again.
func splitValueTests(rules []specs.LinuxSyscall) []specs.LinuxSyscall {
	type key struct {
		name  string
		index uint
	}
	splittable := func(sc specs.LinuxSyscall) (key, []uint64, bool) {
		if sc.Action != specs.ActAllow || len(sc.Names) != 1 || len(sc.Args) != 1 {
			return key{}, nil, false
		}
		if op := sc.Args[0].Op; op != specs.OpMaskedEqual && op != specs.OpEqualTo {
			return key{}, nil, false
		}
		vs, ok := valueSet(sc.Args[0])
		return key{sc.Names[0], sc.Args[0].Index}, vs, ok
	}
	values := map[key][]uint64{}
	for _, sc := range rules {
		if k, vs, ok := splittable(sc); ok {
			values[k] = append(values[k], vs...)
		}
	}
	var out []specs.LinuxSyscall
	done := map[key]bool{}
	for _, sc := range rules {
		k, _, ok := splittable(sc)
		switch {
		case !ok:
			out = append(out, sc)
		case !done[k]:
			done[k] = true
			for _, v := range slices.Compact(slices.Sorted(slices.Values(values[k]))) {
				out = append(out, specs.LinuxSyscall{Names: []string{k.name}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{argEq(k.index, v)}})
			}
		}
	}
	return out
}
