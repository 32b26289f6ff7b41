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
