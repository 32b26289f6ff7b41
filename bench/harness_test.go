package main

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name          string
		sorted        []time.Duration
		med, p10, p90 time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ms(7), ms(7)[0], ms(7)[0], ms(7)[0]},
		{"odd", ms(1, 2, 3), ms(2)[0], ms(1)[0], ms(3)[0]},
		{"even", ms(1, 2, 3, 4), 2500 * time.Microsecond, ms(1)[0], ms(4)[0]},
		{"ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5500 * time.Microsecond, ms(1)[0], ms(9)[0]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.sorted); got != tc.med {
				t.Errorf("median = %v, want %v", got, tc.med)
			}
			if got := percentile(tc.sorted, 10); got != tc.p10 {
				t.Errorf("p10 = %v, want %v", got, tc.p10)
			}
			if got := percentile(tc.sorted, 90); got != tc.p90 {
				t.Errorf("p90 = %v, want %v", got, tc.p90)
			}
		})
	}
}

func TestSelected(t *testing.T) {
	net := benchmark{name: "1 GiB transfer", group: "net"}
	run := benchmark{name: "runc run"}
	tests := []struct {
		name string
		b    benchmark
		only string
		want bool
	}{
		{"no -only picks all", run, "", true},
		{"a part of the name", run, "run", true},
		{"another name", run, "net", false},
		{"the group", net, "net", true},
		{"a part of the group is not the group", net, "ne", false},
		{"a part of a grouped row's name", net, "GiB", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := selected(tc.b, tc.only); got != tc.want {
				t.Errorf("selected(%q, %q) = %v, want %v", tc.b.name, tc.only, got, tc.want)
			}
		})
	}
}

func TestReportAddress(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{"safe-run: web: network: a bridge of its own, address 10.89.3.2, ports 127.0.0.1:8080->80/tcp, egress none (bridge peers and DNS only)", "10.89.3.2"},
		{"safe-run: m01: network: bridge app, address 10.89.0.12, egress all", "10.89.0.12"},
		{"safe-run: web: starting /bin/true as 0:0, user namespace 0:1073741824:65536", ""},
		{"safe-run: web: network: bridge app, address nonsense, egress all", ""},
	}
	for _, tc := range tests {
		a, ok := reportAddress(tc.line)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("reportAddress(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}
