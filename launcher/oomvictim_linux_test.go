package launcher

import (
	"fmt"
	"testing"
	"time"
)

func TestVictimsText(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, ": p0 (host pid 0)"},
		{5, ": p0 (host pid 0), p1 (host pid 1), p2 (host pid 2), p3 (host pid 3), p4 (host pid 4)"},
		{7, ": p0 (host pid 0), p1 (host pid 1), p2 (host pid 2), p3 (host pid 3), p4 (host pid 4) and 2 more"},
	} {
		var v []string
		for i := range tc.n {
			v = append(v, fmt.Sprintf("p%d (host pid %d)", i, i))
		}
		if got := victimsText(v); got != tc.want {
			t.Errorf("victimsText(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestOOMVictim(t *testing.T) {
	const dir = "/sys/fs/cgroup/memory/process_api/7e85/safe-run-web"
	rec := func(usec, msg string) string { return "6,2101," + usec + ",-;" + msg + "\n SUBSYSTEM=x\n" }
	const kill = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=safe-run-web,mems_allowed=0,oom_memcg=/process_api/7e85/safe-run-web,task_memcg=/process_api/7e85/safe-run-web,task=sh,pid=30104,uid=1073872896"
	for _, tc := range []struct {
		name, rec, dir string
		since          time.Duration
		want           string
	}{
		{"a kill in the cgroup", rec("14181911264", kill), dir, 0, "sh (host pid 30104)"},
		{"v2", rec("5", "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/web.service/safe-run-web,task_memcg=/system.slice/web.service/safe-run-web,task=tr,pid=7,uid=0"),
			"/sys/fs/cgroup/system.slice/web.service/safe-run-web", 0, "tr (host pid 7)"},
		{"a name with a comma, a nodemask list", rec("5", "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=0-1,3,cpuset=/,mems_allowed=0,oom_memcg=/safe-run-web,task_memcg=/safe-run-web,task=a,b,pid=8,uid=0"),
			"/sys/fs/cgroup/memory/safe-run-web", 0, "a,b (host pid 8)"},
		{"a global OOM: task_memcg only", rec("5", "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/safe-run-web,task=sh,pid=9,uid=0"),
			"/sys/fs/cgroup/memory/safe-run-web", 0, "sh (host pid 9)"},
		{"before this run", rec("14181911264", kill), dir, 14182 * time.Second, ""},
		{"another service's", rec("14181911264", kill), "/sys/fs/cgroup/memory/process_api/7e85/safe-run-db", 0, ""},
		{"a service whose name ends the same", rec("14181911264", kill), "/sys/fs/cgroup/memory/process_api/7e85/safe-run-xweb", 0, ""},
		{"a cgroup of the same name elsewhere", rec("5", "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/safe-run-web,task_memcg=/safe-run-web,task=sh,pid=9,uid=0"),
			"/sys/fs/cgroup/memory/other/safe-run-web", 0, ""},
		{"the kill line without its cgroup", rec("14181911283", "Memory cgroup out of memory: Killed process 30104 (sh) total-vm:62688kB"), dir, 0, ""},
		{"not a record", "garbage", dir, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, ok := oomVictim(tc.rec, tc.dir, tc.since)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("oomVictim = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}
