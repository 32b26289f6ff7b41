package audit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safe-run/safe-run/policy"
)

// TestRecordedAPI runs Audit against answers in the shape dockerd gives
// them, for the oldest API audit supports in practice (1.41, Docker 20.10,
// Debian 12's docker.io) and a current one (1.52, Docker 29), with the
// fields those versions added and dropped around the ones audit reads. It
// needs no daemon: TestAuditDockerd checks against the real one. The
// containers are the real test's "good" and "bad", so the rule IDs match.
func TestRecordedAPI(t *testing.T) {
	t.Setenv("DOCKER_TLS_VERIFY", "")
	for _, tc := range []struct {
		version, engine string
	}{
		{"1.41", "Docker Engine 20.10.24+dfsg1, API 1.41"},
		{"1.52", "Docker Engine 29.1.3, API 1.52"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			dir := filepath.Join("testdata", "api-"+tc.version)
			var mu sync.Mutex
			var paths []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.RequestURI())
				mu.Unlock()
				if r.Method != http.MethodGet {
					http.Error(w, "audit only reads", http.StatusMethodNotAllowed)
					return
				}
				if r.URL.Path == "/_ping" {
					w.Header().Set("Api-Version", tc.version)
					w.Write([]byte("OK"))
					return
				}
				file := map[string]string{
					"/info":            "info.json",
					"/containers/json": "containers.json",
					"/containers/f1c3a0c2b7e94d7a8e1e2f00aa11bb22cc33dd44ee55ff6677889900aabbccdd/json": "good.json",
					"/containers/0b5d9e8f7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3d2/json": "bad.json",
				}[strings.TrimPrefix(r.URL.Path, "/v"+tc.version)]
				if file == "" || !strings.HasPrefix(r.URL.Path, "/v"+tc.version+"/") {
					http.Error(w, `{"message":"page not found"}`, http.StatusNotFound)
					return
				}
				b, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write(b)
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			host := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
			res, err := Audit(ctx, Options{Host: host})
			if err != nil {
				t.Fatal(err)
			}
			wantPaths := []string{"/_ping", "/v" + tc.version + "/info", "/v" + tc.version + "/containers/json",
				"/v" + tc.version + "/containers/f1c3a0c2b7e94d7a8e1e2f00aa11bb22cc33dd44ee55ff6677889900aabbccdd/json",
				"/v" + tc.version + "/containers/0b5d9e8f7a6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3d2/json"}
			// The TCP listener's probe pings too; only the API paths matter.
			if got := slices.Compact(slices.Sorted(slices.Values(paths))); !containsAll(got, wantPaths) {
				t.Errorf("requests %q, want at least %q", got, wantPaths)
			}
			if len(res.Reports) != 3 {
				t.Fatalf("%d reports, want the daemon's and two containers'", len(res.Reports))
			}
			if d := res.Reports[0]; d.Name != host || !strings.Contains(d.Detail, tc.engine) {
				t.Errorf("daemon report %q (%s), want %s, %s", d.Name, d.Detail, host, tc.engine)
			}
			want := map[string]string{
				host:   "SR026 SR029 SR030 SR031", // as TestAuditDockerd's daemon
				"good": "",
				"bad":  "SR001 SR002 SR003 SR004 SR005 SR006 SR007 SR008 SR009 SR010 SR011 SR012 SR013 SR014 SR015 SR017 SR018 SR021",
			}
			for _, r := range res.Reports {
				if got := strings.Join(ruleIDs(r), " "); got != want[r.Name] {
					t.Errorf("%s: rules %s\nwant %s", r.Name, got, want[r.Name])
				}
			}
		})
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func ruleIDs(r *policy.Report) []string {
	var ids []string
	for _, f := range r.Findings {
		if !slices.Contains(ids, f.Rule.ID) {
			ids = append(ids, f.Rule.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
